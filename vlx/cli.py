"""The ``vlx`` command. Parsing stays import-light; each command imports what it uses."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from vlx.methods import METHODS as METHOD_NAMES

MAX_SIDE = 1024
"""Default longest side of drawn pictures (``vlx.images.MAX_SIDE``; kept here so parsing
imports no image library)."""
PROBE_IMAGES = 100
"""Default shapes probe for ``--text``: enough for stable names, a first call well under a
minute on CPU."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (2 for bad input, with one line on stderr; 130
    after Ctrl-C and 143 after SIGTERM, with whatever was half-written removed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 0
    from vlx.errors import InputError

    name = f"vlx {args.command}"
    with _one_line_warnings(name), _terminate_as_exception():
        try:
            return args.run(args)
        except InputError as err:
            print(f"{name}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print(f"{name}: terminated", file=sys.stderr)
            return 143
        except BrokenPipeError:
            # The reader stopped early (`vlx caption --json | head`): the files are written.
            # Exit as Python's own recipe does, without a traceback when stdout is flushed.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so every ``finally`` runs and temporary files
    are removed before the process exits."""


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _one_line_warnings(name: str) -> Iterator[None]:
    """Warnings as one line each, ``vlx CMD: warning: ...``, not Python's two-line form;
    left alone where someone records or shows them their own way (pytest, an embedding app)."""
    import warnings

    shown = warnings.showwarning
    recorded = getattr(warnings._showwarnmsg_impl, "__name__", "") != "_showwarnmsg_impl"
    if shown is not warnings._showwarning_orig or recorded:
        yield
        return

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{name}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


class Parser(argparse.ArgumentParser):
    """Option errors as every other bad input: one line naming the bad value, status 2
    (``--help`` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vlx",
        description="Visual explanations (Grad-CAM, Guided Grad-CAM, ...) of vision models.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_explain(commands)
    _add_caption(commands)
    _add_vqa(commands)
    _add_train(commands)
    _add_evaluate(commands)
    _add_dissect(commands)
    _add_serve(commands)
    return parser


def _add_explain(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain",
        help="explain an image classifier's predictions",
        description="Explain what an image classifier sees: prints the top-k predictions and "
        "writes one PNG per (image, method, target) plus a grid per image.",
    )
    explain.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    explain.add_argument(
        "--demo", action="store_true", help="explain the bundled cat and coffee photos"
    )
    explain.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="efficientnet_lite0 (default, ImageNet), shapes[:CHECKPOINT] (a ShapesWorld shape "
        "classifier), a torchvision name, timm:NAME, hf:PATH or module:attribute",
    )
    explain.add_argument("--layer", help="dotted name of the layer to explain")
    explain.add_argument(
        "--target",
        nargs="+",
        default=None,
        metavar="NAME_OR_INDEX",
        help="classes to explain (names or indices); default: each image's top class",
    )
    explain.add_argument("--top-k", type=int, default=5, help="predictions to print (5)")
    explain.add_argument("--list-classes", action="store_true", help="print class names and exit")
    _add_explanation_outputs(explain)
    explain.set_defaults(run=_lazy("vlx.commands.explain"))


def _add_caption(commands: argparse._SubParsersAction) -> None:
    caption = commands.add_parser(
        "caption",
        help="caption an image and explain every word",
        description="Caption an image with the Show-and-Tell model (or explain a caption you "
        "give) and write a figure with one Grad-CAM overlay per word (the paper's Fig. 11). "
        "With no IMAGE, a held-out ShapesWorld scene is used.",
    )
    caption.add_argument("image", nargs="?", metavar="IMAGE", help="image file")
    caption.add_argument("--caption", help="explain this caption instead of the generated one")
    caption.add_argument("--words", nargs="+", metavar="W", help="explain only these words")
    caption.add_argument("--whole", action="store_true", help="add the whole-caption map")
    caption.add_argument("--beam", type=int, default=0, help="beam width (default: greedy)")
    caption.add_argument("--layer", help="layer to explain (default: the encoder's output)")
    caption.add_argument("--checkpoint", help="captioner checkpoint (default: the shipped one)")
    caption.add_argument(
        "--model", default="shapes",
        help="shapes (default: the ShapesWorld captioner, or --checkpoint) or hf:PATH "
        "(a VisionEncoderDecoder or BLIP save_pretrained directory with its processor)",
    )
    caption.add_argument("--scene", type=int, default=0, help="ShapesWorld test scene (0)")
    _add_explanation_outputs(caption)
    caption.set_defaults(run=_lazy("vlx.commands.caption"))


def _add_vqa(commands: argparse._SubParsersAction) -> None:
    vqa = commands.add_parser(
        "vqa",
        help="answer a question about an image and explain the answers",
        description="Answer a question with a VQA model and write a figure with one Grad-CAM "
        "overlay per answer: the predicted one and any forced with --answers (the paper's "
        "Fig. 12). With no IMAGE, a held-out ShapesWorld scene and one of its questions.",
    )
    vqa.add_argument("image", nargs="?", metavar="IMAGE", help="image file")
    vqa.add_argument("question", nargs="?", metavar="QUESTION", help="the question")
    vqa.add_argument(
        "--model", default="coattention",
        help="coattention (default), lstm-cnn, a checkpoint from `vlx train vqa`, or hf:PATH "
        "(a ViLT or BLIP save_pretrained directory with its processor)",
    )
    vqa.add_argument("--answers", nargs="+", metavar="A", help="answers to force and explain")
    vqa.add_argument("--layer", help="layer to explain, e.g. encoder.stages.1")
    vqa.add_argument("--scene", type=int, default=0, help="ShapesWorld test scene (0)")
    _add_explanation_outputs(vqa)
    vqa.set_defaults(run=_lazy("vlx.commands.vqa"))


def _add_explanation_outputs(parser: argparse.ArgumentParser) -> None:
    """What ``explain``, ``caption`` and ``vqa`` share: the methods, where and how results go,
    and ``--text`` with the probe it dissects the explained layer on."""
    parser.add_argument(
        "--method",
        type=_listed(METHOD_NAMES),
        default=["gradcam"],
        help=f"comma-separated methods: {','.join(METHOD_NAMES)} (gradcam)",
    )
    parser.add_argument("--out", default="vlx-out", help="output folder (vlx-out)")
    parser.add_argument(
        "--max-side", type=int, default=MAX_SIDE,
        help=f"longest side of the pictures drawn, in pixels ({MAX_SIDE}); peaks are given in "
        "the image's own pixels",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument(
        "--text", action="store_true",
        help="add textual explanations: each target's top-5 / bottom-5 units of the layer by "
        "alpha, named by dissecting the layer (cached after the first call)",
    )
    parser.add_argument(
        "--probe", default="shapes",
        help="dissection probe for --text: shapes (ShapesWorld, default) or a Broden directory",
    )
    parser.add_argument(
        "--data", metavar="SOURCE",
        help="explain a whole dataset into a table (OUT/explanations/*.parquet): a folder of "
        "images, a text file of image paths, csv:FILE, coco:CAPTIONS_JSON,IMAGE_DIR, "
        "vqa2:QUESTIONS_JSON,ANNOTATIONS_JSON,IMAGE_DIR, voc:DIR or shapes:N",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32,
        help="images per forward: examples per batch with --data, edited copies per forward "
        "for occlusion, scorecam and ablationcam (32)",
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="loader processes decoding and preprocessing (default: 0 when the model runs on "
        "the CPU, whose cores it already uses all of; 4 on a GPU)",
    )
    parser.add_argument(
        "--part-size", type=int, default=1024,
        help="examples per table part, the unit a rerun resumes from (1024)",
    )
    parser.add_argument(
        "--figures", choices=("none", "grid", "all"), default="none",
        help="with --data: pictures to draw, none (default), a grid per example, or all",
    )
    parser.add_argument("--save-alphas", action="store_true",
                        help="with --data: keep each target's alphas in the table")
    parser.add_argument("--fail-fast", action="store_true",
                        help="with --data: stop at the first example that fails")
    parser.add_argument(
        "--probe-images", type=int, default=PROBE_IMAGES,
        help=f"probe images dissected for --text ({PROBE_IMAGES}; of a Broden directory, its "
        "first N)",
    )


def _add_dissect(commands: argparse._SubParsersAction) -> None:
    dissect = commands.add_parser(
        "dissect",
        help="name a layer's units by the concepts they detect (Network Dissection)",
        description="Network Dissection (Bau et al. 2017): threshold each unit of a layer at "
        "its top-0.5% activation, measure the IoU of that region with every probe concept, "
        "and name the unit by its best one. Writes tally.csv (NetDissect columns), "
        "dissection.json and units.png; results are cached for --text.",
    )
    dissect.add_argument(
        "--model", default="efficientnet_lite0",
        help="a classifier as `vlx explain --model` takes it (default efficientnet_lite0), or "
        "the ShapesWorld models captioner, coattention, lstm-cnn (their image encoders)",
    )
    dissect.add_argument("--layer", help="layer to dissect (default: the model's explained layer)")
    dissect.add_argument(
        "--probe", default="shapes",
        help="shapes (held-out ShapesWorld scenes, default) or a Broden directory",
    )
    dissect.add_argument(
        "--images", type=int, default=None,
        help="probe images to use (shapes default 200; a Broden directory: all)",
    )
    dissect.add_argument("--out", default="vlx-out", help="output folder (vlx-out)")
    dissect.add_argument("--device", default="cpu", help="cpu or cuda")
    dissect.add_argument("--json", action="store_true", help="print a JSON summary")
    dissect.set_defaults(run=_lazy("vlx.commands.dissect"))


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="a local demo page: pick a photo, click a class, a caption word or an answer",
        description="Serve a local page (the serve extra: pip install -e '.[serve]') that "
        "explains the three tasks' models: the top classes, each word of a caption and the "
        "predicted and forced answers, with every method at any layer, the textual "
        "explanation, and the figure and --json record to download.",
    )
    serve.add_argument(
        "--model", action="append", default=[], metavar="TASK=NAME",
        help="a task's model as `vlx explain|caption|vqa --model` takes it, e.g. "
        "classify=resnet50, caption=hf:./blip-caption, vqa=lstm-cnn (repeatable; default: "
        "efficientnet_lite0, the shipped captioner, coattention)",
    )
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=7860, help="port (7860; 0: any free one)")
    serve.add_argument("--max-upload", type=float, default=20, metavar="MB",
                       help="largest upload accepted, in MB (20)")
    serve.add_argument("--device", default="cpu", help="cpu or cuda")
    serve.add_argument("--probe", default="shapes",
                       help="dissection probe for textual explanations: shapes (default) or a "
                       "Broden directory")
    serve.add_argument("--probe-images", type=int, default=PROBE_IMAGES,
                       help=f"probe images dissected per layer, once ({PROBE_IMAGES})")
    serve.set_defaults(run=_lazy("vlx.serve.command"))


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="measure explanations against ground truth")
    metrics = evaluate.add_subparsers(dest="metric", metavar="METRIC", required=True)
    pointing = _evaluation_parser(
        metrics, "pointing", "the pointing game",
        "Pointing game (paper Sec. 4.3, 8.1.1): does the map's peak lie on what the word, "
        "answer or class refers to? Reports accuracy per referent category next to the "
        "image-centre and uniform-random-point baselines; --rejection scores a classifier's "
        "top-5 classes with rejection (Appendix D).", images=300,
    )
    pointing.add_argument(
        "--method", default="gradcam", choices=METHOD_NAMES, help="method to score (gradcam)"
    )
    pointing.add_argument(
        "--rejection", action="store_true",
        help="top-5 classes; a map whose max (raw) is under a threshold rejects its class",
    )
    pointing.add_argument(
        "--reject-threshold", type=float, nargs="+", metavar="T",
        help="rejection thresholds on the raw map max (default: 1/16 .. 64, doubling)",
    )
    faithfulness = _evaluation_parser(
        metrics, "faithfulness", "rank correlation with occlusion maps",
        "Faithfulness (paper Sec. 5.3): Spearman rank correlation of each method's map with "
        "the occlusion-sensitivity map (window 16, stride 8 px) of the predicted target.",
        images=100,
    )
    faithfulness.add_argument(
        "--method", type=_listed(METHOD_NAMES), default=["gradcam", "guided-backprop"],
        help="comma-separated methods; the first leads the paired differences "
        "(gradcam,guided-backprop)",
    )
    localization = _evaluation_parser(
        metrics, "localization", "weakly-supervised localization (box IoU)",
        "Weakly-supervised localization (paper Sec. 4.1): the box around the largest segment "
        "of the map above --threshold x its max must reach IoU 0.5 with a true box. For a "
        "classifier: ILSVRC top-1 / top-5 localization and classification error over its "
        "predictions; otherwise per referent category of the targets.", images=300,
    )
    localization.add_argument(
        "--method", default="gradcam", choices=METHOD_NAMES, help="method to score (gradcam)"
    )
    localization.add_argument(
        "--threshold", type=float, default=0.15, help="segment threshold, fraction of max (0.15)"
    )
    localization.add_argument("--iou", type=float, default=0.5, help="IoU for a hit (0.5)")
    deletion = _evaluation_parser(
        metrics, "deletion", "deletion and insertion curve areas",
        "Deletion / insertion (Petsiuk et al. 2018): the probability of the explained class, "
        "word or answer as the most salient pixels are removed (area: lower is better) or put "
        "back into a blurred image (area: higher is better). A classifier without ShapesWorld "
        "classes or --data is scored on the bundled photos.", images=20,
    )
    deletion.add_argument(
        "--method", type=_listed((*METHOD_NAMES, "random")),
        default=["gradcam", "guided-backprop", "occlusion", "random"],
        help="comma-separated methods, `random` for a noise map "
        "(gradcam,guided-backprop,occlusion,random)",
    )
    deletion.add_argument("--steps", type=int, default=20, help="curve steps (20)")
    deletion.add_argument(
        "--insertion-baseline", choices=["blur", "zero", "mean"], default="blur",
        help="the image pixels are inserted into (blur)",
    )
    road = _evaluation_parser(
        metrics, "road", "ROAD: remove pixels and impute them (MoRF / LeRF)",
        "ROAD (Rong et al. 2022): the probability of the explained class, word or answer as "
        "the most (MoRF, lower is better) or least (LeRF, higher is better) salient pixels are "
        "removed and filled in from their neighbours with noise, so the removal itself leaks "
        "no shape. A classifier without ShapesWorld classes is scored on the bundled photos.",
        images=20,
    )
    road.add_argument(
        "--method", type=_listed((*METHOD_NAMES, "random")),
        default=["gradcam", "guided-backprop", "random"],
        help="comma-separated methods, `random` for a noise map (gradcam,guided-backprop,random)",
    )
    road.add_argument(
        "--fractions", type=_fractions, default=[k / 10 for k in range(1, 10)],
        help="comma-separated shares of pixels removed, each in (0, 1) (0.1,...,0.9)",
    )
    road.add_argument("--noise", type=float, default=0.01,
                      help="std of the noise added to imputed pixels, in input units (0.01)")
    sanity = _evaluation_parser(
        metrics, "sanity", "sanity checks: randomize the model or its labels",
        "Sanity checks (Adebayo et al. 2018): how similar each method's maps stay (rank "
        "correlation, absolute rank correlation, SSIM, HOG) when the model's weights are "
        "randomized block by block from the output down (cascading), one block at a time "
        "(independent), or when it was trained on shuffled labels (data). A map that stays "
        "similar shows the input, not the model.", images=50,
    )
    sanity.add_argument("--randomization", choices=["cascading", "independent", "data"],
                        default="cascading", help="which test (cascading)")
    sanity.add_argument(
        "--method", type=_listed(METHOD_NAMES), default=["gradcam", "guided-backprop"],
        help="comma-separated methods (gradcam,guided-backprop)",
    )
    sanity.add_argument(
        "--against",
        help="with --randomization data: the model trained on shuffled labels (default for the "
        "ShapesWorld classifier: the shipped one, trained by `vlx train classifier "
        "--training-scenes 512 --permuted-labels`)",
    )
    sanity.add_argument("--seed", type=int, default=0, help="seed of the random weights (0)")
    sanity.add_argument("--figure", metavar="PNG",
                        help="also draw the first example's maps at every step (the paper's Fig. 2)")
    energy = _evaluation_parser(
        metrics, "energy", "mean map inside vs outside the referent",
        "Energy ratio (paper Sec. 8.1, DenseCap comparison): mean map value on the pixels a "
        "target describes over the mean elsewhere, per referent category; a uniform map "
        "scores 1.", images=100,
    )
    energy.add_argument(
        "--method", type=_listed(METHOD_NAMES), default=["gradcam", "guided-backprop",
                                                         "guided-gradcam"],
        help="comma-separated methods (gradcam,guided-backprop,guided-gradcam)",
    )


def _fractions(text: str) -> list[float]:
    """Comma-separated shares in (0, 1)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fractions {text!r}: numbers in (0, 1) separated by "
                                         "commas") from None
    bad = [v for v in values if not 0 < v < 1]
    if bad or not values:
        raise argparse.ArgumentTypeError(f"fraction {(bad or [text])[0]!r} is not in (0, 1)")
    return values


def _listed(valid: tuple[str, ...]) -> Callable[[str], list[str]]:
    """A comma-separated list of names from ``valid``, at least one."""

    def parse(text: str) -> list[str]:
        methods = [m.strip() for m in text.split(",") if m.strip()]
        bad = [m for m in methods if m not in valid]
        if bad or not methods:
            raise argparse.ArgumentTypeError(
                f"unknown method {(bad or [text])[0]!r}; valid: {', '.join(valid)}"
            )
        return methods

    return parse


def _evaluation_parser(
    metrics: argparse._SubParsersAction, name: str, what: str, description: str, *,
    images: int,
) -> argparse.ArgumentParser:
    """A ``vlx evaluate NAME`` parser with the options every evaluation shares."""
    parser = metrics.add_parser(name, help=what, description=description)
    parser.add_argument(
        "--task", choices=["classify", "caption", "vqa"],
        help="the task (default with --data voc:DIR: classify; with coco:...: caption)",
    )
    parser.add_argument("--images", type=int, default=images, help=f"images to score ({images})")
    parser.add_argument(
        "--data", default="shapes",
        help="shapes (ShapesWorld test split, default), voc:DIR (images + Pascal-VOC XML, "
        "classifiers) or coco:CAPTIONS_JSON,INSTANCES_JSON,IMAGE_DIR (captioners); the metrics "
        "that explain predictions (deletion, faithfulness, road, sanity) also take any "
        "`vlx explain --data` source: a folder of images, a list of paths, csv:FILE",
    )
    parser.add_argument(
        "--model",
        help="as `vlx explain|caption|vqa --model` takes it; default: the shipped ShapesWorld "
        "model of the task (efficientnet_lite0 with --data voc:DIR)",
    )
    parser.add_argument("--checkpoint", help="a captioner checkpoint (the same as --model PATH)")
    parser.add_argument("--layer", help="layer to explain (default: the model's)")
    parser.add_argument(
        "--batch-size", type=int, default=1,
        help="scenes or photos measured at once (1; more is faster, with the same results up "
        "to float rounding)",
    )
    parser.add_argument("--workers", type=int, default=0,
                        help="loader processes drawing scenes and decoding photos (0)")
    parser.add_argument(
        "--out", help="keep each part's records here, so a rerun goes on where it stopped "
        "(and write summary.json)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=_lazy("vlx.commands.evaluate"))
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a ShapesWorld (or COCO / VQA v2) model")
    trainees = train.add_subparsers(dest="trainee", metavar="MODEL", required=True)
    captioner = _training_parser(
        trainees, "captioner", "the Show-and-Tell captioner",
        data="shapes (default) or coco:CAPTIONS_JSON[,IMAGE_DIR]", steps=10000, eval_images=300,
    )
    captioner.add_argument(
        "--pool", choices=["mean", "what-where"], default="mean",
        help="image pooling: global average (default) or averages plus spatial moments",
    )
    captioner.add_argument(
        "--no-coordinates", dest="coordinates", action="store_false",
        help="do not give the last encoder stage x/y coordinate channels",
    )
    captioner.add_argument(
        "--stride", type=int, choices=(8, 4),
        help="the encoder map's stride: 8 (16 x 16 cells at 128 px; default for a new model) "
        "or 4 (32 x 32, the same weights dilated)",
    )
    captioner.add_argument(
        "--receptive-field", type=int, choices=(71, 55, 39),
        help="pixels a unit of a new model's encoder map sees (71, default; 55 or 39: 1 x 1 "
        "convolutions in the last stage)",
    )
    captioner.add_argument(
        "--init", metavar="CHECKPOINT",
        help="start a new run (step 0, its own schedule) from this captioner's weights and "
        "vocabulary; --stride may change its encoder's stride (with --steps 0: no training)",
    )
    vqa = _training_parser(
        trainees, "vqa", "a VQA model (LSTM-CNN or hierarchical co-attention)",
        data="shapes (default) or vqa2:QUESTIONS_JSON,ANNOTATIONS_JSON,IMAGE_DIR", steps=5000,
        eval_images=500,
    )
    vqa.add_argument("--model", choices=["lstm-cnn", "coattention"], required=True)
    classifier = _training_parser(
        trainees, "classifier", "a ShapesWorld shape classifier (encoder, global average pool, "
        "linear: a CAM model)", data="shapes", steps=2000, eval_images=500, lr=3e-3,
    )
    classifier.add_argument("--image-size", type=int, default=64, help="scene side (64 px)")
    classifier.add_argument(
        "--object-scale", type=float, default=1.0, help="object size vs ShapesWorld's (1.0)"
    )
    classifier.add_argument(
        "--training-scenes", type=int, default=0,
        help="train on the first N training scenes only (0: the whole training split)",
    )
    classifier.add_argument(
        "--permuted-labels", action="store_true",
        help="shuffle the labels among the --training-scenes (the sanity checks' data "
        "randomization test: a model that can only memorise)",
    )


def _training_parser(
    trainees: argparse._SubParsersAction, name: str, what: str, *, data: str, steps: int,
    eval_images: int, lr: float = 2e-3,
) -> argparse.ArgumentParser:
    """A ``vlx train NAME`` parser with the options every training command shares."""
    parser = trainees.add_parser(
        name,
        help=what,
        description=f"Train {what}; writes OUT and OUT.json (seed, data, steps, metrics). "
        "Checkpoints every --checkpoint-every steps; --resume continues from OUT.",
    )
    parser.add_argument("--data", default="shapes", help=data)
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps ({steps})")
    parser.add_argument("--batch", type=int, default=32, help="batch size (32)")
    parser.add_argument("--lr", type=float, default=lr, help=f"peak learning rate ({lr:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps (500)")
    parser.add_argument(
        "--eval-images", type=int, default=eval_images,
        help=f"held-out scenes scored at the end ({eval_images})",
    )
    parser.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from --out")
    parser.add_argument(
        "--force", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.set_defaults(run=_lazy("vlx.commands.train"))
    return parser


def _lazy(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(module).run(args)

    return run


def print_json(summary: dict) -> None:
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    raise SystemExit(main())
