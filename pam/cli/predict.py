"""Verbs for users: ``predict`` (image regions), ``video`` (a tracked region) and ``stream``
(its events, also ``video --stream``), ``convert-upstream`` (a released folder written out in PAM's format)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..processing.prompts import IMAGE_TASKS, LANGUAGES
from . import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="masks and text for regions of one image",
        description="Masks and text for regions of one image; JSON on stdout.",
    )
    p.add_argument("image", help="image file")
    _common(p)
    p.add_argument("--task", action="append", choices=IMAGE_TASKS, help="repeatable; default detailed_caption")
    _question_args(p, "ask this free question about the region instead of --task (raw answer in texts.question)")
    p.set_defaults(func=_predict)

    v = sub.add_parser(
        "video",
        help="caption a region tracked through a video (or --stream events)",
        description="Track a region given on frame K and caption it; --stream captions events one after another.",
    )
    _video_args(v)
    v.add_argument(
        "--stream", action="store_true", help="caption events one after another, one JSON line each (as `pam stream`)"
    )
    _question_args(v, "ask this free question about the tracked region instead of captioning it (not with --stream)")
    v.set_defaults(func=_video)

    s = sub.add_parser(
        "stream",
        help="stream event captions of a region tracked through a video",
        description="Track a region given on frame K with one SAM 2 state and caption each event as it closes, "
        "the previous caption in the prompt; event boundaries are change points of the tracked mask's motion "
        "(--boundaries auto) or fixed windows. Each event is printed as one JSON line on stdout as soon as it "
        "closes; --out also writes result.json.",
    )
    _video_args(s)
    s.set_defaults(func=_video, stream=True, question=None)

    c = sub.add_parser(
        "convert-upstream",
        help="write a released PAM folder out in PAM's format",
        description="Load a released PAM folder (Perceive-Anything/PAM-*) strictly "
        "and export it as a self-contained PAM checkpoint.",
    )
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--sam2-checkpoint", default=None, help="SAM 2.1 .pt, needed when the folder has no vision tower")
    c.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16", help="LLM dtype of the export")
    c.add_argument(
        "--base-config",
        default=None,
        help="model config (.yaml/.json) for the non-LLM settings; default: the paper's (SAM 2.1 Hiera-L)",
    )
    c.set_defaults(func=_convert)


def _question_args(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--question", default=None, help=text)
    p.add_argument("--prompt", dest="prompt_alias", default=None, help="deprecated alias of --question")


def _question(args: argparse.Namespace) -> str | None:
    """``--question``, or the deprecated ``--prompt`` (with a warning on stderr)."""
    alias = getattr(args, "prompt_alias", None)
    if alias is not None:
        if args.question is not None:
            raise UsageError("give --question (or its deprecated alias --prompt), not both")
        print("pam: --prompt is deprecated; use --question", file=sys.stderr)
        args.question = alias
    return args.question


def _video_args(v: argparse.ArgumentParser) -> None:
    from ..inference.events import BoundaryRule

    rule = BoundaryRule()
    v.add_argument("video", help="video file or folder of frames")
    _common(v)
    v.add_argument("--frame", type=int, default=0, help="frame the region is given on (default 0)")
    v.add_argument(
        "--boundaries",
        choices=("auto", "fixed"),
        default="auto",
        help="streaming: motion change points or fixed windows",
    )
    v.add_argument("--window", type=int, default=32, help="streaming: longest event in frames (fixed: window length)")
    v.add_argument(
        "--threshold",
        type=float,
        default=rule.threshold,
        help="streaming, auto: smallest change of the mask's mean velocity "
        "(frame fractions per frame) that ends an event",
    )
    v.add_argument(
        "--motion-window",
        type=int,
        default=rule.window,
        help="streaming, auto: frames averaged on each side of a boundary",
    )
    v.add_argument(
        "--min-event-frames", type=int, default=None, help="streaming: shortest event (default min(4, --window))"
    )
    v.add_argument("--max-frames", type=int, default=None, help="track at most this many frames, spread evenly")
    v.add_argument("--format", choices=("gif", "mp4"), default="gif", help="annotated output video format")


REGION_HELP = (
    "regions: each --box and each --mask is one region, and all --point flags together are one region; "
    "given once each, --box, --point and --mask prompt ONE region together (SAM 2's combined prompt). For several "
    "regions repeat --box (or --mask), or give each region as --region 'box=x0,y0,x1,y1;point=x,y[,label];mask=PATH' "
    "(repeatable, any mix, quote the ;). The JSON holds one entry per region, in order."
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="PAM checkpoint/export folder or released PAM folder")
    p.add_argument("--box", action="append", default=[], help="x0,y0,x1,y1 in pixels; repeatable: one region each")
    p.add_argument(
        "--point",
        action="append",
        default=[],
        help="x,y[,label] (label 1 positive, 0 negative); repeatable: all points make one region",
    )
    p.add_argument("--mask", action="append", default=[], help="binary mask PNG (nonzero = region); repeatable")
    p.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="SPEC",
        help="one region as 'box=x0,y0,x1,y1;point=x,y[,label];...;mask=PATH' (any of them); repeatable",
    )
    p.add_argument("--language", choices=LANGUAGES, default="en")
    p.add_argument(
        "--greedy", action="store_true", help="greedy decoding (default: upstream's sampling, temperature 0.1)"
    )
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--sam2-checkpoint", default=None, help="released folder without a vision tower: SAM 2.1 .pt")
    p.add_argument(
        "--base-config", default=None, help="released folder: model config (.yaml/.json) for the non-LLM settings"
    )
    p.add_argument("--out", help="folder for the annotated image/video and result.json")
    p.epilog = REGION_HELP


def _numbers(text: str, flag: str, counts: tuple[int, ...]) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated numbers") from None
    if len(vals) not in counts:
        raise UsageError(f"{flag} {text!r}: expected {' or '.join(map(str, counts))} values, got {len(vals)}")
    return vals


def _mask(text: str, flag: str):
    import numpy as np
    from PIL import Image

    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} not found")
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 0


def _points(texts: list[str], flag: str) -> dict:
    pts = [_numbers(p, flag, (2, 3)) for p in texts]
    return {"points": [p[:2] for p in pts], "labels": [int(p[2]) if len(p) == 3 else 1 for p in pts]}


def _region_spec(text: str) -> dict:
    """``--region 'box=...;point=...;point=...;mask=PATH'`` -> one region dict."""
    flag = f"--region {text!r}"
    region: dict = {}
    points: list[str] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, eq, value = (v.strip() for v in part.partition("="))
        if not eq or key not in ("box", "point", "mask"):
            raise UsageError(f"{flag}: {part!r} is not box=x0,y0,x1,y1, point=x,y[,label] or mask=PATH")
        if key == "point":
            points.append(value)
        elif key in region:
            raise UsageError(f"{flag}: {key} given twice; a region has one box and one mask (use another --region)")
        elif key == "box":
            region["box"] = _numbers(value, f"{flag} box", (4,))
        else:
            region["mask"] = _mask(value, f"{flag} mask")
    if points:
        region.update(_points(points, f"{flag} point"))
    if not region:
        raise UsageError(f"{flag}: empty region; give box=..., point=... or mask=...")
    return region


def _regions(args) -> list[dict]:
    """The regions the flags ask about, in order (the rule: ``REGION_HELP``)."""
    boxes, points, masks = args.box, args.point, args.mask
    if args.region:
        if boxes or points or masks:
            raise UsageError("give regions either as --region specs or as --box/--point/--mask flags, not both")
        return [_region_spec(text) for text in args.region]
    if len(boxes) > 1 or len(masks) > 1:
        if points or (boxes and masks):
            raise UsageError(
                f"{len(boxes)} --box and {len(masks)} --mask flags with {len(points)} --point: repeated --box or "
                "--mask flags are one region each, so they do not combine with other prompts; give each region as "
                "--region 'box=x0,y0,x1,y1;point=x,y[,label];mask=PATH'"
            )
        return [{"box": _numbers(b, "--box", (4,))} for b in boxes] + [{"mask": _mask(m, "--mask")} for m in masks]
    region: dict = {}
    if boxes:
        region["box"] = _numbers(boxes[0], "--box", (4,))
    if points:
        region.update(_points(points, "--point"))
    if masks:
        region["mask"] = _mask(masks[0], "--mask")
    if not region:
        raise UsageError("give a region: --box, --point, --mask or --region")
    return [region]


def _checked_regions(regions: list[dict], hw) -> None:
    """Every region through the one validator before the model loads; errors name the region."""
    from ..inference.regions import Region

    for i, region in enumerate(regions):
        name = "region" if len(regions) == 1 else f"region {i}"
        Region.from_any(region, name).checked(hw, name)


def _check_numbers(args) -> None:
    """Flags that must be positive, named as the user typed them (not silently replaced by a default)."""
    for flag, value, low in (
        ("--max-new-tokens", args.max_new_tokens, 1),
        ("--max-frames", getattr(args, "max_frames", None), 1),
        ("--frame", getattr(args, "frame", None), 0),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")


def _predictor(args, **kwargs):
    from ..inference.predictor import PAMPredictor

    gen = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else None
    return PAMPredictor.from_pretrained(
        args.checkpoint,
        device=args.device,
        greedy=args.greedy,
        generation=gen,
        sam2_checkpoint=args.sam2_checkpoint,
        base_config=args.base_config,
        progress=sys.stderr.isatty(),
        **kwargs,
    )


def _predict(args: argparse.Namespace) -> int:
    from ..inference.predictor import question_turn
    from ..inference.regions import check_tasks, load_rgb
    from ..processing.prompts import QUESTION_KEY
    from ..utils.visualize import overlay

    if _question(args) is not None:
        if args.task:
            raise UsageError("give --task or --question, not both")
        question_turn(args.question)  # an empty question fails before loading the model
        tasks = [QUESTION_KEY]
    else:
        tasks = check_tasks(args.task or ["detailed_caption"], args.language)
    _check_numbers(args)
    image = load_rgb(args.image, "image")
    regions = _regions(args)
    _checked_regions(regions, image.shape[:2])  # fail before loading the model
    if args.question is not None:
        results = _predictor(args).predict(image, regions, language=args.language, question=args.question)
    else:
        results = _predictor(args).predict(image, regions, tasks=tasks, language=args.language)
    head = {"image": args.image, "checkpoint": args.checkpoint}
    # one region: its fields at the top level (as always); several: a "regions" list, one entry each
    out = {**head, **results[0].to_json()} if len(results) == 1 else {**head, "regions": []}
    for i, (region, result) in enumerate(zip(regions, results)):
        entry = result.to_json() if len(results) > 1 else out
        if args.out:
            folder = Path(args.out)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / ("overlay.png" if len(results) == 1 else f"overlay_{i}.png")
            overlay(
                image,
                result.mask,
                box=region.get("box"),
                points=region.get("points"),
                labels=region.get("labels"),
                caption=" | ".join(result.texts[t] for t in tasks),
            ).save(path)
            entry["overlay"] = str(path)
        if len(results) > 1:
            out["regions"].append({"index": i, **entry})
    if args.out:
        (Path(args.out) / "result.json").write_text(json.dumps(out, indent=2, ensure_ascii=False))
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _frame_masks(masks, indices: list[int]) -> list[dict]:
    """Per-frame masks as ``{"frame": index in the input video, "mask_rle": COCO RLE}``."""
    from ..inference.results import encode_rle

    return [{"frame": int(k), "mask_rle": encode_rle(m)} for k, m in zip(indices, masks)]


def _video(args: argparse.Namespace) -> int:
    from ..inference.events import BoundaryRule
    from ..inference.video_input import load_video

    _check_numbers(args)
    if args.window < 1:
        raise UsageError("--window must be >= 1")
    if _question(args) is not None:
        if args.stream:
            raise UsageError("--question asks one question about the clip; it does not go with --stream")
        from ..inference.predictor import question_turn

        question_turn(args.question)  # an empty question fails before any decoding
    rule = None
    if args.stream:
        shortest = min(4, args.window) if args.min_event_frames is None else args.min_event_frames
        try:
            rule = BoundaryRule(
                mode=args.boundaries,
                window=args.motion_window,
                threshold=args.threshold,
                min_event_frames=shortest,
                max_event_frames=args.window,
            ).validate()
        except ValueError as err:
            raise UsageError(f"event boundaries: {err}") from None
    frames, indices = load_video(args.video, max_frames=args.max_frames, start=args.frame)
    regions = _regions(args)
    _checked_regions(regions, frames.shape[1:3])  # fail before loading the model
    predictor = _predictor(args, max_tracked_frames=args.max_frames)
    several = len(regions) > 1
    entries, annotations = [], []
    for i, region in enumerate(regions):
        tag = {"region": i} if several else {}
        if args.stream:
            entry, masks, captions = _stream_region(args, predictor, frames, indices, region, rule, tag)
        else:
            result = predictor.predict_video(frames, region, language=args.language, question=args.question)
            entry = {
                "text": result.text,
                "score": result.score,
                "frame_indices": indices,
                "llm_frames": [indices[k] for k in result.llm_frames],
                "masks": _frame_masks(result.masks, indices),
            }
            masks, captions = result.masks, [result.text] * len(result.masks)
        entries.append(entry)
        annotations.append((masks, captions))
    out = {"video": args.video, **entries[0]} if not several else {"video": args.video, "regions": []}
    for i, (entry, (masks, captions)) in enumerate(zip(entries, annotations)):
        if args.out:
            name = "annotated" if not several else f"annotated_{i}"
            entry["annotated"] = str(_write_annotated(Path(args.out), frames, masks, captions, args.format, name))
            if not several:
                out["annotated"] = entry["annotated"]
        if several:
            out["regions"].append({"index": i, **entry})
    if args.out:
        (Path(args.out) / "result.json").write_text(json.dumps(out, indent=2, ensure_ascii=False))
    if not args.stream:  # streaming printed its events as JSON lines already
        print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _stream_region(args, predictor, frames, indices: list[int], region: dict, rule, tag: dict):
    """Stream one region's events, printing each as one JSON line on stdout as soon as it closes."""
    import numpy as np

    events, lines = [], []
    for event in predictor.stream(
        frames, region, language=args.language, boundaries=rule, progress=sys.stderr.isatty()
    ):
        # stream() numbers frames within the clip it was given; map them to the input video
        span = indices[event.start_frame : event.end_frame + 1]
        line = {
            **tag,
            "event": len(events),
            **event.to_json(),
            "start_frame": indices[event.start_frame],
            "end_frame": indices[event.end_frame],
            "masks": _frame_masks(event.masks, span),
        }
        print(json.dumps(line, ensure_ascii=False), flush=True)
        events.append(event)
        lines.append(line)
    masks = np.concatenate([e.masks for e in events])
    captions = [e.caption for e in events for _ in range(len(e.masks))]
    return {"events": lines}, masks, captions


def _write_annotated(folder: Path, frames, masks, captions, fmt: str, name: str = "annotated") -> Path:
    import numpy as np

    from ..utils.visualize import annotate_frames, save_gif

    folder.mkdir(parents=True, exist_ok=True)
    images = annotate_frames(frames, masks, captions)
    if fmt == "gif":
        path = folder / f"{name}.gif"
        save_gif(images, path)
        return path
    from ..data.video import write_video_mp4

    arrays = [np.asarray(im) for im in images]
    h, w = arrays[0].shape[:2]
    path = folder / f"{name}.mp4"
    write_video_mp4(str(path), [a[: h - h % 2, : w - w % 2] for a in arrays])
    return path


def _convert(args: argparse.Namespace) -> int:
    import shutil

    from ..api import is_released_folder, load_pam
    from ..checkpoints.pam_checkpoint import export_pam

    src, dst = Path(args.src), Path(args.dst)
    if not is_released_folder(src):
        raise FileNotFoundError(f"{src}: not a released PAM folder (no config.json, or a PAM checkpoint)")
    if dst.exists():
        raise UsageError(f"{dst} already exists")
    bundle = load_pam(src, sam2_checkpoint=args.sam2_checkpoint, base_config=args.base_config, dtype=args.dtype)
    export_pam(bundle.model, bundle.tokenizer, dst, metadata={"converted_from": str(src)})
    if (src / "generation_config.json").is_file():
        shutil.copy(src / "generation_config.json", dst / "generation_config.json")
    print(json.dumps({"src": str(src), "dst": str(dst), "files": sorted(p.name for p in dst.iterdir())}, indent=2))
    return 0
