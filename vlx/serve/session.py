"""What the page shows, computed over the task contract and kept for the clicks that follow.

An ``Analysis`` is one image (with its question, or a typed caption) under one task, method and
layer: prepared, predicted and explained once by the commands' own runner, for every target
the page lists at once (the top classes, every word of the caption, the top answers: one
forward and one batched backward). A click on one of them is read from that explanation; a
forced answer, another method or the layer ``--text`` reads adds one explanation, kept too.
Images and analyses live in small LRU stores. Requests share nothing mutable but these stores,
each behind its lock: the engine's hooks belong to the thread of each call.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from PIL import Image

from vlx.commands import caption as caption_command
from vlx.commands import explain as explain_command
from vlx.commands import vqa as vqa_command
from vlx.commands.runner import Run, explain_batch, figure, grid_sheet, locate_peaks
from vlx.commands.textual import layer_units
from vlx.dissect.names import UnitName
from vlx.dissect.textual import target_alphas, textual_explanation
from vlx.errors import InputError
from vlx.explanation import Explanation
from vlx.images import DEMO_IMAGES, bounded, load_image, read_image
from vlx.layers import spatial_layers
from vlx.methods import ALPHA_METHODS, BATCH_SIZE, COPY_METHODS, METHODS
from vlx.render import explanation_picture, png_bytes
from vlx.task import Example, Target, TargetSet, Task

MAX_SIDE = 512
"""Longest side of the pictures the page draws: enough for its panels, quick to encode."""
TOP_K = {"classify": 5, "vqa": 3}
"""Classes and answers the page lists (as ``vlx explain`` and ``vlx vqa`` print them)."""
SIDE_METHODS = {"classify": ("counterfactual", "guided-gradcam")}
"""Methods shown beside the chosen one for every target of a task (the paper's Fig. 1)."""
KEPT_IMAGES = 16
KEPT_ANALYSES = 16
"""LRU sizes: images people picked (kept whole, so peaks are in their own pixels), and
analyses they may click on again."""
DEFAULT_QUESTION = "what color is the circle?"
"""Asked of a photo until a person types a question (a scene suggests its own)."""
SCENE = "scene"
SAMPLES = (*(path.stem for path in DEMO_IMAGES), SCENE)
"""The images a person picks without uploading: the bundled photos and a ShapesWorld scene."""

Kept = TypeVar("Kept")
Wanted = int | str
"""A target as the page names it: an id (class, word position, answer index) or a typed
answer."""


@dataclass(frozen=True)
class Picked:
    """An image the page holds: what it is called in results, and the question a ShapesWorld
    scene suggests."""

    image: Image.Image
    name: str
    question: str | None = None


@dataclass(frozen=True)
class Choice:
    """What the page asks about: a task, an image, its text (question or typed caption),
    the method and the layer (``None``: the model's own)."""

    task: str
    image: str
    text: str | None = None
    method: str = "gradcam"
    layer: str | None = None


@dataclass
class Analysis:
    """One choice prepared, predicted and explained; explanations by (method, layer), each
    with the target ids it covers."""

    run: Run
    explained: dict[tuple[str, str | None], list[tuple[list[Target], Explanation]]] = field(
        default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def explain(self, method: str, layer: str | None, wanted: list[Wanted]
                ) -> tuple[TargetSet, Explanation]:
        """``wanted``'s targets and their explanation, read from one already made where it
        covers them; else made for every listed target at once (when they are among them),
        so the next click is read too."""
        task, run = self.run.task, self.run
        key = (method, layer or run.layer)
        targets = task.targets(run.batch, [wanted])
        # A target is its id and its name: generated answers are numbered within each
        # request (BLIP's, a VLM's), so an id alone may name another answer of another request.
        ids = list(targets.rows[0])
        with self.lock:
            known = list(self.explained.get(key, []))
        for covered, explanation in known:
            if set(ids) <= set(covered):
                return targets, _columns(explanation, [covered.index(i) for i in ids])
        explained = run.targets if set(ids) <= set(run.targets.rows[0]) else targets
        explanation = task.explain(run.batch, explained, method, layer, batch_size=BATCH_SIZE)
        covered = list(explained.rows[0])
        with self.lock:
            self.explained.setdefault(key, []).append((covered, explanation))
        return targets, _columns(explanation, [covered.index(i) for i in ids])


class Demo:
    """The page's state: the loaded tasks, the images picked, the analyses made and the
    dissections ``--text`` names units by (made in the background on first use)."""

    def __init__(self, tasks: dict[str, Task], models: dict[str, str], probe: str = "shapes",
                 probe_images: int = 100) -> None:
        self.tasks, self.models = tasks, models
        self.probe = argparse.Namespace(probe=probe, probe_images=probe_images)
        self._images: _Store[Picked] = _Store(KEPT_IMAGES)
        self._analyses: _Store[Analysis] = _Store(KEPT_ANALYSES)
        self._layers: dict[str, list[str]] = {}
        self._dissections: dict[tuple[str, str], Future[list[UnitName]]] = {}
        self._lock = threading.Lock()

    def config(self) -> dict[str, Any]:
        """What the page offers: tasks with their models and layers, methods, samples."""
        return {
            "tasks": {kind: {"model": self.models[kind], "layer": task.layer}
                      for kind, task in self.tasks.items()},
            "methods": list(METHODS),
            "text_methods": list(ALPHA_METHODS),
            "slow_methods": list(COPY_METHODS),
            "samples": list(SAMPLES),
            "question": DEFAULT_QUESTION,
            "probe": {"name": self.probe.probe, "images": self.probe.probe_images},
        }

    def sample(self, name: str, index: int | None = None) -> dict[str, Any]:
        """A bundled photo by name, or ShapesWorld test scene ``index`` (default: a fresh one)."""
        if name == SCENE:
            from vlx.data.shapes import SPLITS, ShapesWorld

            first, length = SPLITS["test"]
            index = random.randrange(length) if index is None else index
            if not 0 <= index < length:
                raise InputError(f"scene {index} is out of range; valid: 0..{length - 1}")
            scene = ShapesWorld(seed=0).scene(first + index)
            questions = scene.questions()
            question = next((q.text for q in questions if q.kind == "colour"), questions[0].text)
            return self._keep(Picked(Image.fromarray(scene.image), f"shapes-test-{index}",
                                     question))
        photos = {path.stem: path for path in DEMO_IMAGES}
        if name not in photos:
            raise InputError(f"unknown sample {name!r}; valid: {', '.join(SAMPLES)}")
        return self._keep(Picked(load_image(photos[name]), name))

    def upload(self, data: bytes, filename: str) -> dict[str, Any]:
        """An uploaded file, read as ``vlx explain`` reads a photo (errors name the file)."""
        return self._keep(Picked(read_image(data, filename), Path(filename).stem or "upload"))

    def image_name(self, image: str) -> str:
        """What results call the image: the file's stem, the photo's or the scene's name."""
        return self._image(image).name

    def image_png(self, image: str) -> bytes:
        """The image as the page draws it."""
        return png_bytes(bounded(self._image(image).image, MAX_SIDE))

    def analyze(self, choice: Choice) -> dict[str, Any]:
        """The prediction and the targets the page lists, each clickable by its id."""
        analysis = self._analysis(choice)
        run = analysis.run
        predicted = run.predictions[0]
        probability = {p.index: p.probability for p in predicted}
        scores = run.explanations[choice.method].scores[0].tolist()
        return {
            "task": choice.task,
            "model": self.models[choice.task],
            "image": choice.image,
            "text": run.batch.examples[0].text,
            "prediction": predicted[0].name,
            "layer": run.layer,
            "layers": self._layer_names(choice.task, analysis),
            "targets": [{"id": t.id, "name": t.name, "probability": probability.get(t.id),
                         "score": s} for t, s in zip(run.targets.rows[0], scores)],
        }

    def explain(self, choice: Choice, wanted: Wanted | None) -> dict[str, Any]:
        """The maps of one target (default: the first listed): the chosen method's, and for
        classes the counterfactual and Guided Grad-CAM beside it."""
        analysis = self._analysis(choice)
        run = analysis.run
        wanted = run.targets.rows[0][0].id if wanted is None else wanted
        panels, target = [], None
        for method in self._methods(choice):
            targets, explanation = analysis.explain(method, choice.layer, [wanted])
            target = targets.rows[0][0]
            picture = explanation_picture(explanation, 0, 0, run.shown[0])
            panels.append({
                "method": method,
                "png": "data:image/png;base64," + base64.b64encode(png_bytes(picture)).decode(),
                "score": float(explanation.scores[0, 0]),
                "peak": run.peak(explanation, 0, 0),
            })
        return {"target": {"id": target.id, "name": target.name}, "layer": run.layer,
                "panels": panels}

    def figure_png(self, choice: Choice, wanted: Wanted | None, forced: list[str]) -> bytes:
        """The figure the matching command writes: ``vlx explain``'s sheet of the class, or
        ``vlx caption``'s (every word) and ``vlx vqa``'s (predicted and forced answers)."""
        run = self._command_run(choice, wanted, forced)
        if choice.task == "classify":
            _, panels = explain_command.explained_targets(run, 0)
            return png_bytes(grid_sheet([("input", run.shown[0]), *panels]))
        layout = caption_command.LAYOUT if choice.task == "caption" else vqa_command.LAYOUT
        return png_bytes(figure(run, choice.method, _entries(run, forced), layout))

    def record(self, choice: Choice, wanted: Wanted | None, forced: list[str]) -> dict[str, Any]:
        """The ``--json`` record of the matching command (no files: nothing was written)."""
        run = self._command_run(choice, wanted, forced)
        if choice.task == "classify":
            entries, _ = explain_command.explained_targets(run, 0)
            image = explain_command.image_record(run, 0, run.batch.examples[0].name, entries, [])
            return {"command": "explain", "model": self.models["classify"], "layer": run.layer,
                    "images": [image]}
        entries = _entries(run, forced)
        locate_peaks(run, entries)
        if choice.task == "caption":
            return caption_command.record(run, entries, [])
        return vqa_command.record(run, self.models["vqa"], entries, [])

    def text(self, choice: Choice, wanted: Wanted | None) -> dict[str, Any]:
        """The target's top-5 / bottom-5 named units (paper Sec. 7), ranked by the chosen
        method's alphas (Grad-CAM's where it has none). The layer is dissected once in the
        background: until then the answer is ``pending``, with a message saying so."""
        analysis = self._analysis(choice)
        task = analysis.run.task
        reader = choice.method if choice.method in ALPHA_METHODS else "gradcam"
        subject = task.dissection_subject(choice.layer)
        key = (choice.task, subject.layer)
        with self._lock:
            if key not in self._dissections:
                self._dissections[key] = _in_background(lambda: layer_units(subject, self.probe))
            dissection = self._dissections[key]
        wait([dissection], timeout=0.5)
        if not dissection.done():
            return {"status": "pending", "message": (
                f"naming the units of {subject.layer}: dissecting it on "
                f"{self.probe.probe_images} {self.probe.probe} probe images, once per model "
                "and layer (up to a few minutes on a CPU; then cached)")}
        try:
            units = dissection.result()
        except Exception:  # said on the page; the next request tries again
            with self._lock:
                self._dissections.pop(key, None)
            raise
        wanted = analysis.run.targets.rows[0][0].id if wanted is None else wanted
        targets, explanation = analysis.explain(reader, subject.layer, [wanted])
        alphas = target_alphas(explanation)[0, 0]
        text = textual_explanation(alphas, units, targets.rows[0][0].name, layer=subject.layer)
        return {"status": "ready", **text.to_dict(), "method": reader}

    def _keep(self, picked: Picked) -> dict[str, Any]:
        digest = hashlib.sha256(picked.image.tobytes())
        digest.update(f"{picked.image.size}|{picked.name}".encode())
        image = digest.hexdigest()[:16]
        self._images.put(image, picked)
        return {"image": image, "name": picked.name, "width": picked.image.width,
                "height": picked.image.height, "question": picked.question}

    def _image(self, image: str) -> Picked:
        picked = self._images.get(image)
        if picked is None:
            raise InputError(f"image {image!r} is not held (any more); pick or upload it again")
        return picked

    def _task(self, kind: str) -> Task:
        if kind not in self.tasks:
            raise InputError(f"unknown task {kind!r}; valid: {', '.join(self.tasks)}")
        return self.tasks[kind]

    def _methods(self, choice: Choice) -> list[str]:
        return list(dict.fromkeys([choice.method, *SIDE_METHODS.get(choice.task, ())]))

    def _analysis(self, choice: Choice) -> Analysis:
        task = self._task(choice.task)
        if choice.method not in METHODS:
            raise InputError(f"unknown method {choice.method!r}; valid: {', '.join(METHODS)}")
        picked = self._image(choice.image)
        text = (choice.text or "").strip() or None
        if task.kind == "vqa" and text is None:
            raise InputError("type a question, e.g. 'what color is the circle?'")
        key = (choice.task, choice.image, text, choice.method, choice.layer)
        analysis = self._analyses.get(key)
        if analysis is None:
            options = argparse.Namespace(method=[choice.method], layer=choice.layer, text=False,
                                         batch_size=BATCH_SIZE, max_side=MAX_SIDE)
            run = explain_batch(task, [Example(picked.image, text, picked.name)], options,
                                _listed, TOP_K.get(task.kind, 1))
            analysis = Analysis(run, {(choice.method, run.layer): [
                (list(run.targets.rows[0]), run.explanations[choice.method])]})
            self._analyses.put(key, analysis)
        return analysis

    def _layer_names(self, kind: str, analysis: Analysis) -> list[str]:
        """The model's spatial layers, last first (found once, by one probing forward)."""
        if kind not in self._layers:
            run = analysis.run
            problem = run.task.problem(run.batch, run.targets)
            with problem.context():
                found = spatial_layers(
                    problem.model, lambda: problem.model(*problem.inputs, **problem.model_kwargs),
                    problem.to_grid)
            self._layers[kind] = found[::-1]
        return self._layers[kind]

    def _command_run(self, choice: Choice, wanted: Wanted | None, forced: list[str]) -> Run:
        """The run the matching command would make: the class; every word; the predicted
        answer and the forced ones."""
        analysis = self._analysis(choice)
        run = analysis.run
        listed = [t.id for t in run.targets.rows[0]]
        if choice.task == "caption":
            requested = listed
        elif choice.task == "vqa":
            ids = [t.id for t in run.task.targets(run.batch, [forced]).rows[0]] if forced else []
            requested = list(dict.fromkeys([listed[0], *ids]))
        else:
            requested = [listed[0] if wanted is None else wanted]
        explained = {m: analysis.explain(m, choice.layer, requested) for m in self._methods(choice)}
        targets = next(iter(explained.values()))[0]
        return replace(run, targets=targets,
                       explanations={m: e for m, (_, e) in explained.items()})


def _entries(run: Run, forced: list[str]) -> list[dict]:
    """The ``--json`` entries of a caption's words or of the answers (forced ones marked)."""
    if run.task.kind == "caption":
        return caption_command.word_entries(run)
    return vqa_command.answer_entries(run, forced)


def _listed(predictions: list) -> list[int] | None:
    """The targets an analysis lists: the predicted classes or answers themselves; every
    word of a caption (``None``)."""
    first = predictions[0]
    return [p.index for p in first] if first[0].index is not None else None


def _in_background(work: Callable[[], Any]) -> Future:
    """``work`` on a daemon thread, so a server stopped mid-dissection exits at once (the
    dissection cache is written atomically: nothing half-written is read later)."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except Exception as err:  # noqa: BLE001 - handed to whoever reads the result
            future.set_exception(err)

    threading.Thread(target=run, name="vlx-dissect", daemon=True).start()
    return future


def _columns(explanation: Explanation, columns: list[int]) -> Explanation:
    """The explanation of some of its targets, in the order given."""

    def pick(values: Any) -> Any:
        return None if values is None else values[:, columns]

    names = explanation.targets
    return replace(
        explanation, maps=pick(explanation.maps), scores=pick(explanation.scores),
        alphas=pick(explanation.alphas), channels=pick(explanation.channels),
        targets=None if names is None else [[row[c] for c in columns] for row in names],
    )


class _Store(Generic[Kept]):
    """A small thread-safe LRU mapping: the least recently used entry goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[Any, Kept] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> Kept | None:
        with self.lock:
            if key not in self.entries:
                return None
            self.entries.move_to_end(key)
            return self.entries[key]

    def put(self, key: Any, value: Kept) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
