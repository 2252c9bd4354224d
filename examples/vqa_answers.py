"""Paper Sec. 8.2: Grad-CAM for forced VQA answers, pointing per question kind, faithfulness.

For held-out ShapesWorld scenes, a colour question ("what color is the circle?") is asked of
the shipped co-attention model and the LSTM-CNN, and Grad-CAM explains the true colour and two
other answers (the colours of other objects in the scene first) in one forward and one batched
backward: one overlay per answer with its pre-softmax score, the object asked about outlined
and each map's peak circled, as in the paper's Fig. 12. The tables: the pointing game for the
correct answer's map per question kind (`vlx evaluate pointing --task vqa`), and the rank
correlation of Grad-CAM and Guided Backprop maps with occlusion maps
(`vlx evaluate faithfulness --task vqa`; paper 0.60 vs 0.42).

    python examples/vqa_answers.py                   # 300 scenes pointing and faithfulness
    python examples/vqa_answers.py --fast
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _shapes_classifiers import figure_path, markdown_table, percent, write_results
from caption_words import enlarged, pointing_picture
from PIL import Image

from vlx.data.shapes import COLOURS, SPLITS, Question, Scene, ShapesWorld
from vlx.devices import resolve_device
from vlx.evaluate.measures import Faithfulness, Pointing
from vlx.evaluate.runner import measure
from vlx.evaluate.sources import POINTED_KINDS, evaluation_data
from vlx.models.vqa_lstm_cnn import ENCODER_LAYER
from vlx.render import grid, save_png
from vlx.task import Example
from vlx.tasks.vqa import ShapesVQA

NAME = "vqa_answers"
MODELS = {"coattention": "co-attention", "lstm-cnn": "LSTM-CNN"}
FORCED = 3  # the true colour and two others
PAPER_FAITHFULNESS = {"gradcam": 0.60, "guided-backprop": 0.42}
PANEL = 176


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    result.add_argument("--fast", action="store_true",
                        help="3 scenes scored, 2 for faithfulness, 1 figure: runs in seconds")
    result.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    result.add_argument("--out", type=Path, default=Path("docs"),
                        help=f"writes OUT/results/{NAME}.md and OUT/figures/{NAME}_*.png")
    result.add_argument("--images", type=int, default=300, help="test scenes for pointing (300)")
    result.add_argument("--faithfulness-images", type=int, default=300,
                        help="test scenes for the occlusion rank correlation (300)")
    result.add_argument("--figures", type=int, default=3, help="test scenes drawn (3)")
    return result


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    pointed, faithful, drawn = (
        (3, 2, 1) if args.fast else (args.images, args.faithfulness_images, args.figures)
    )
    world = ShapesWorld(seed=0)
    first = SPLITS["test"][0]
    models = {name: ShapesVQA.load(name, device) for name in MODELS}
    figures = [answer_figure(models, scene, question, args.out)
               for scene, question in colour_questions(world, first, drawn)]

    def pointing(vqa: ShapesVQA, layer: str | None = None) -> dict:
        data = evaluation_data(vqa, "shapes", pointed, "pointing")
        return measure(vqa, data, Pointing(layer))["categories"]

    results = {
        name: {
            "pointing": pointing(vqa),
            "faithfulness": measure(
                vqa, evaluation_data(vqa, "shapes", faithful, "faithfulness"), Faithfulness())["methods"],
        }
        for name, vqa in models.items()
    }
    results["coattention"]["encoder pointing"] = pointing(models["coattention"], ENCODER_LAYER)
    write_results(args.out, NAME, report(results, pointed, faithful))
    print("figures: " + ", ".join(str(f) for f in figures))
    return results


def colour_questions(world: ShapesWorld, first: int, count: int) -> list[tuple[Scene, Question]]:
    """The first ``count`` test scenes that have a colour question, with that question."""
    found = []
    index = first
    while len(found) < count:
        scene = world.scene(index)
        asked = [q for q in scene.questions() if q.kind == "colour"]
        if asked:
            found.append((scene, asked[0]))
        index += 1
    return found


def forced_answers(scene: Scene, question: Question) -> list[str]:
    """The true colour, then other objects' colours, then other colours: ``FORCED`` in all."""
    others = [o.colour for o in scene.objects] + list(COLOURS)
    return list(dict.fromkeys([question.answer, *others]))[:FORCED]


def answer_figure(
    models: dict[str, ShapesVQA], scene: Scene, question: Question, out: Path
) -> Path:
    """Fig. 12: per model, the input and one overlay per forced answer with its score."""
    picture = enlarged(scene, PANEL)
    answers = forced_answers(scene, question)
    mask = scene.object_mask(question.referent)
    panels = []
    for name, vqa in models.items():
        batch = vqa.prepare([Example(Image.fromarray(scene.image), question.text)])
        predicted = vqa.predict(batch, top_k=1)[0][0]
        explanation = vqa.explain(batch, vqa.targets(batch, answers))
        panels.append((f"{MODELS[name]}: says {predicted.name}", picture))
        for t, answer in enumerate(answers):
            panel, _ = pointing_picture(explanation, t, picture, mask)
            panels.append((f"{answer}: {float(explanation.scores[0, t]):.1f}", panel))
    number = scene.index - SPLITS["test"][0]
    caption = (f"Q: {question.text}  A: {question.answer}. Grad-CAM per forced answer (its "
               "pre-softmax score); outline: the object asked about; circle: the map's peak.")
    figure = grid(panels, columns=1 + len(answers), caption=caption, panel_size=PANEL)
    return save_png(figure, figure_path(out, NAME, f"_scene{number}"))


def report(results: dict, pointed: int, faithful: int) -> str:
    pointing_rows = []
    for name, result in results.items():
        for kind in POINTED_KINDS:
            row = result["pointing"].get(kind)
            if row is None:
                continue
            attention = percent(row["attention"]) if "attention" in row else "n/a"
            pointing_rows.append([MODELS[name], kind, row["count"], percent(row["answered"]),
                                  percent(row["accuracy"]), attention, percent(row["centre"]),
                                  percent(row["random"])])
    for kind, row in results["coattention"]["encoder pointing"].items():
        pointing_rows.append([f"co-attention at {ENCODER_LAYER}", kind, row["count"],
                              percent(row["answered"]), percent(row["accuracy"]),
                              percent(row["attention"]), percent(row["centre"]),
                              percent(row["random"])])
    faithfulness_rows = []
    for name, result in results.items():
        cells = []
        for method in PAPER_FAITHFULNESS:
            row = result["faithfulness"][method]
            cells.append(f"{row['rank_correlation']:.3f} +- {row['std_error']:.3f} "
                         f"(n={row['count']})")
        lead = result["faithfulness"]["guided-backprop"]
        cells.append(f"{lead['difference']:+.3f} +- {lead['difference_std_error']:.3f}")
        faithfulness_rows.append([MODELS[name], *cells])
    faithfulness_rows.append(["*paper* (VQA, VGG-16)",
                              *(f"{v:.2f}" for v in PAPER_FAITHFULNESS.values()), "+0.18"])
    return (
        "# Forced VQA answers, their pointing and faithfulness (paper Sec. 8.2)\n\n"
        f"The shipped ShapesWorld VQA models; the {pointed} first test scenes, every colour "
        "and shape question whose object is known. The map explained is the correct answer's "
        "(pre-softmax score, Grad-CAM at the model's default layer: the attended map for the "
        "co-attention model, the encoder's output for the LSTM-CNN; the co-attention model's "
        "encoder output, `encoder.stages.2`, is the last row); a hit: its peak, after "
        "bilinear upsampling, lies on the object asked about. *Answered*: the share the model "
        "answers correctly. *Attention*: the same game for the co-attention model's own "
        "question-level region weights (where it looked). Baselines: the image centre and a "
        "uniform random point.\n\n"
        + markdown_table(["model", "question kind", "questions", "answered", "Grad-CAM pointing",
                          "attention pointing", "centre baseline", "random point"],
                         pointing_rows)
        + f"\nFaithfulness (Sec. 5.3 protocol, applied to VQA as in Sec. 8.2): Spearman rank "
        f"correlation with the occlusion map (window 16, stride 8 px) of the predicted answer, "
        f"one question per scene, the {faithful} first test scenes (mean +- standard error; "
        "constant maps left out); *lead*: Grad-CAM minus Guided Backprop on the same scenes. "
        "The paper measured VQA with VGG-16 on real photos; the numbers are context, not a "
        "like-for-like comparison.\n\n"
        + markdown_table(["model", "Grad-CAM", "Guided Backprop", "lead (paired)"],
                         faithfulness_rows)
        + f"\nFigures (Fig. 12): `{NAME}_scene*.png`, one row per model.\n"
    )


if __name__ == "__main__":
    main()
