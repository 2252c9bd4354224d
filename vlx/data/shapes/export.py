"""ShapesWorld as files, for tools that want files: PNGs with one ``annotations.json``, or in
the COCO format (captions and instance masks), so the COCO readers and evaluations run on a
world whose ground truth is exact."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vlx.data.shapes.grammar import Question
from vlx.data.shapes.scene import Scene
from vlx.data.shapes.vocabulary import SHAPES
from vlx.data.shapes.world import ShapesWorld
from vlx.files import write_atomic, write_text_atomic


def write_split(
    world: ShapesWorld, out_dir: str | Path, start: int, count: int, progress: bool = True
) -> Path:
    """Write scenes ``start .. start + count - 1`` as PNGs plus one ``annotations.json``.

    For tools that want files rather than a generator. Every file is written under a temporary
    name and renamed, so an interrupted run leaves no half-written file; ``annotations.json``
    is written last, so its presence means the split is complete.

    Returns:
        ``out_dir`` as a Path.
    """
    from PIL import Image
    from tqdm import tqdm

    if start < 0 or count < 0:
        raise ValueError(f"start and count must be >= 0, got start={start}, count={count}")
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    records = []
    scenes = world.scenes(start, count)
    for scene in tqdm(scenes, total=count, disable=not progress, desc="ShapesWorld", unit="img"):
        name = f"{scene.index:07d}.png"
        image = Image.fromarray(scene.image)
        write_atomic(images_dir / name, lambda stream, image=image: image.save(stream, format="PNG"))
        records.append(_record(scene, f"images/{name}"))
    annotations = {
        "world": {
            "seed": world.seed,
            "image_size": world.image_size,
            "min_objects": world.min_objects,
            "max_objects": world.max_objects,
            "textured_fraction": world.textured_fraction,
            "object_scale": world.object_scale,
        },
        "start": start,
        "count": count,
        "images": records,
    }
    write_text_atomic(out / "annotations.json", json.dumps(annotations))
    return out


def read_split(directory: str | Path) -> dict[str, Any]:
    """Read the annotations written by ``write_split``.

    Returns:
        A dict with "world" (the ShapesWorld parameters, so scenes can be regenerated),
        "start", "count" and "images" (per image: file_name relative to ``directory``, index,
        background, objects with shape/colour/size/box, caption, questions).
    """
    path = Path(directory) / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a complete split written by write_split")
    annotations = json.loads(path.read_text())
    for record in annotations["images"]:
        for obj in record["objects"]:
            obj["box"] = tuple(obj["box"])
        record["questions"] = [Question(**q) for q in record["questions"]]
    return annotations


def _record(scene: Scene, file_name: str) -> dict[str, Any]:
    return {
        "file_name": file_name,
        "index": scene.index,
        "background": scene.background,
        "objects": [
            {"shape": o.shape, "colour": o.colour, "size": o.size, "box": list(o.box)}
            for o in scene.objects
        ],
        "caption": scene.caption(),
        "questions": [q._asdict() for q in scene.questions()],
    }


def write_coco(world: ShapesWorld, out_dir: str | Path, start: int, count: int) -> Path:
    """Write scenes ``start .. start + count - 1`` as COCO: ``images/``, ``captions.json``
    (each scene's reference caption) and ``instances.json`` (one category per shape, each
    object an instance with its exact mask as an uncompressed RLE and its box)."""
    from PIL import Image

    out = Path(out_dir)
    images, captions, instances = [], [], []
    for scene in world.scenes(start, count):
        name = f"{scene.index:07d}.png"
        image = Image.fromarray(scene.image)
        write_atomic(out / "images" / name, lambda stream, image=image: image.save(stream, "PNG"))
        height, width = scene.image.shape[:2]
        images.append({"id": scene.index, "file_name": name, "height": height, "width": width})
        captions.append({"id": len(captions) + 1, "image_id": scene.index,
                         "caption": scene.caption()})
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            instances.append({
                "id": len(instances) + 1, "image_id": scene.index,
                "category_id": SHAPES.index(obj.shape) + 1, "iscrowd": 0,
                "segmentation": {"size": [height, width], "counts": _runs(obj.mask)},
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(obj.mask.sum()),
            })
    categories = [{"id": i + 1, "name": shape} for i, shape in enumerate(SHAPES)]
    write_text_atomic(out / "captions.json", json.dumps({"images": images,
                                                         "annotations": captions}))
    write_text_atomic(out / "instances.json", json.dumps(
        {"images": images, "categories": categories, "annotations": instances}))
    return out


def _runs(mask) -> list[int]:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, zeros first."""
    flat = np.asarray(mask, dtype=np.int8).flatten(order="F")
    edges = [0, *(np.flatnonzero(np.diff(flat)) + 1).tolist(), flat.size]
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat[0] else runs
