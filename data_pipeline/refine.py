"""VLM refinement: fill the text fields a region lacks by asking a chat backend about a Set-of-Mark
overlay of the image (or of keyframes for video), with the source label as a hint.

Concurrent (a thread pool over a chunk of records), sharded (record ``i`` belongs to shard
``i % num_shards``), resumable (records already in the output are skipped; with a cache, answers a
crashed run received are not asked again), rate-limited and retried by the backend. A transport
failure (retries exhausted) stops the run after writing the records that completed; an answer that
is not the JSON asked for drops the region, counted by reason.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from pam.clients import ChatBackend, ChatError, complete_many, image_part, text_part
from pam.data.schema import TEXT_FIELDS, Record, RegionAnnotation
from pam.data.skips import BadSample

from .backend import parse_json_object
from .manifest import Manifest
from .media import ResumableOutput, read_frames
from .prompts import Prompt, load_prompt
from .records import iter_records
from .som import mark_of, render

logger = logging.getLogger("data_pipeline")


@dataclass
class RefineConfig:
    fields: tuple[str, ...] = TEXT_FIELDS  # fields to fill where a region lacks them
    overwrite: tuple[
        str, ...
    ] = ()  # fields regenerated even when present; the old value goes to extra["source_<field>"]
    image_prompt_version: int | None = None  # refine_image version (default: newest)
    video_prompt_version: int | None = None  # refine_video version (default: newest)
    keyframes: int = 3  # keyframes shown per video region
    max_side: int = 768  # overlays are resized so their longer side is at most this
    max_workers: int = 4  # concurrent requests
    chunk_records: int = 16  # records per written chunk
    shard: int = 0
    num_shards: int = 1
    max_tokens: int = 512
    temperature: float = 0.0
    root: str | None = None  # folder relative media paths resolve against (default: the input file's folder)

    def __post_init__(self) -> None:
        self.fields, self.overwrite = tuple(self.fields), tuple(self.overwrite)
        bad = [f for f in self.fields + self.overwrite if f not in TEXT_FIELDS]
        if bad or not self.fields:
            raise ValueError(
                f"refine field `fields`/`overwrite` has unknown field(s) {bad}; "
                f"expected a non-empty subset of {TEXT_FIELDS}"
            )
        if not set(self.overwrite) <= set(self.fields):
            raise ValueError(
                f"refine field `overwrite` {list(self.overwrite)} must be among `fields` {list(self.fields)}"
            )
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"refine field `shard` must be in [0, num_shards={self.num_shards}), got {self.shard}")
        for name in ("keyframes", "max_side", "max_workers", "chunk_records", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"refine field `{name}` must be >= 1, got {getattr(self, name)}")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class _Job:
    record: int  # index in the chunk
    region: int
    needed: tuple[str, ...]
    messages: list[dict] = field(default_factory=list)


def source_label(region: RegionAnnotation) -> str:
    if region.category and "en" in region.category:
        return region.category["en"]
    return str(region.extra.get("raw_category") or region.extra.get("source_category") or "unknown")


def needed_fields(region: RegionAnnotation, config: RefineConfig) -> tuple[str, ...]:
    return tuple(f for f in config.fields if getattr(region, f) is None or f in config.overwrite)


def _field_lines(prompt: Prompt, needed: tuple[str, ...]) -> str:
    return "\n".join(f"- {f}: {prompt.field_descriptions.get(f, f)}" for f in needed)


def _keys(needed: tuple[str, ...]) -> str:
    return ", ".join(f'"{f}"' for f in needed)


def image_jobs(record: Record, config: RefineConfig, prompt: Prompt, index: int) -> list[_Job]:
    todo = [(k, needed_fields(r, config)) for k, r in enumerate(record.regions)]
    todo = [(k, n) for k, n in todo if n]
    if not todo:
        return []
    pixels = read_frames(record, [0], config.root)[0]
    h, w = pixels.shape[:2]
    marks = [mark_of(region, k + 1, 0, h, w) for k, region in enumerate(record.regions)]
    overlay = image_part(render(pixels, marks, max_side=config.max_side))
    jobs = []
    for k, needed in todo:
        text = prompt.render(
            num_regions=len(marks),
            number=k + 1,
            label=source_label(record.regions[k]),
            fields=_field_lines(prompt, needed),
            keys=_keys(needed),
        )
        messages = [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": [text_part(text), overlay]},
        ]
        jobs.append(_Job(index, k, needed, messages))
    return jobs


def keyframes_of(frames: list[int], n: int) -> list[int]:
    """``n`` frames spread evenly over ``frames`` (first and last included)."""
    if len(frames) <= n:
        return list(frames)
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def video_jobs(record: Record, config: RefineConfig, prompt: Prompt, index: int) -> list[_Job]:
    jobs = []
    for k, region in enumerate(record.regions):
        needed = needed_fields(region, config)
        if not needed:
            continue
        frames = keyframes_of(region.annotated_frames(), config.keyframes)
        if not frames:
            raise BadSample("no_prompt", f"record {record.id} region {k} has no annotated frame")
        pixels = read_frames(record, frames, config.root)
        parts = [
            text_part(
                prompt.render(
                    num_frames=len(frames),
                    frames=", ".join(map(str, frames)),
                    number=1,
                    label=source_label(region),
                    fields=_field_lines(prompt, needed),
                    keys=_keys(needed),
                )
            )
        ]
        for f, image in zip(frames, pixels):
            h, w = image.shape[:2]
            parts.append(image_part(render(image, [mark_of(region, 1, f, h, w)], max_side=config.max_side)))
        jobs.append(
            _Job(index, k, needed, [{"role": "system", "content": prompt.system}, {"role": "user", "content": parts}])
        )
    return jobs


def apply_answer(region: RegionAnnotation, needed: tuple[str, ...], answer: str) -> str | None:
    """Fill ``region`` from the JSON answer; returns a drop reason, or None when filled."""
    try:
        data = parse_json_object(answer)
    except ValueError:
        return "unparsable_answer"
    values = {}
    for name in needed:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            return f"answer_lacks_{name}"
        values[name] = value.strip()
    for name, value in values.items():
        old = getattr(region, name)
        new = {"en": value}
        if old is not None and old.get("en") == value:
            new = dict(old)
        elif old is not None and "en" in old:  # regenerated: keep the source's text; its translation is stale
            region.extra[f"source_{name}"] = old["en"]
        setattr(region, name, new)
    return None


def refine_file(path: str, out: str, backend: ChatBackend, config: RefineConfig, manifest: Manifest) -> dict[str, Any]:
    """Refine every record of ``path`` in this shard into ``out`` (appending; see the module docstring)."""
    if config.root is None:
        config.root = os.path.dirname(os.path.abspath(path))
    image_prompt = load_prompt("refine_image", config.image_prompt_version)
    video_prompt = load_prompt("refine_video", config.video_prompt_version)
    manifest.prompts.update({image_prompt.name: image_prompt.version, video_prompt.name: video_prompt.version})
    manifest.backend = backend.describe()
    manifest.settings.update(config.as_dict())
    manifest.add_input(path)
    manifest.outputs.append(out)
    output = ResumableOutput(out)
    manifest.step("regions")
    records_step = manifest.step("records")
    params = {"max_tokens": config.max_tokens, "temperature": config.temperature}

    def pending():
        for i, record in enumerate(iter_records(path)):
            if i % config.num_shards != config.shard:
                continue
            manifest.counts["records_read"] += 1  # of this shard
            if record.id in output.done:
                manifest.counts["records_already_done"] += 1
                continue
            yield record

    failure: ChatError | None = None
    chunk: list[Record] = []
    for record in itertools.chain(pending(), [None]):  # records stream through in chunks
        if record is not None:
            chunk.append(record)
            if len(chunk) < config.chunk_records:
                continue
        if chunk:
            failure = _refine_chunk(chunk, backend, config, (image_prompt, video_prompt), manifest, output, params)
            chunk = []
        if failure is not None:
            break
    manifest.usage = backend.usage.as_dict()
    manifest.counts["records_written"] = records_step.kept
    if failure is not None:
        manifest.counts["stopped_by_error"] = 1
        manifest.settings["error"] = str(failure)
        raise failure
    return manifest.as_dict()


def _refine_chunk(
    chunk: list[Record],
    backend: ChatBackend,
    config: RefineConfig,
    prompts: tuple[Prompt, Prompt],
    manifest: Manifest,
    output: ResumableOutput,
    params: dict[str, Any],
) -> ChatError | None:
    """Ask for every region of ``chunk`` concurrently, append the finished records; the first
    transport error, if any, is returned (its records are not written)."""
    image_prompt, video_prompt = prompts
    regions, records_step = manifest.step("regions"), manifest.step("records")
    failure: ChatError | None = None
    jobs: list[_Job] = []
    broken: set[int] = set()
    for k, record in enumerate(chunk):
        try:
            make = image_jobs if record.media_type == "image" else video_jobs
            jobs.extend(make(record, config, image_prompt if record.media_type == "image" else video_prompt, k))
        except BadSample as err:
            logger.warning("refine: dropping record %s: %s", record.id, err)
            records_step.dropped[f"media_{err.reason}"] += 1
            broken.add(k)
    jobs = [j for j in jobs if j.record not in broken]
    answers = complete_many(
        backend, [j.messages for j in jobs], max_workers=config.max_workers, return_exceptions=True, **params
    )
    failed_records: set[int] = set()
    outcome: dict[int, list[tuple[int, str | None, int]]] = {}  # record -> [(region, drop reason, fields filled)]
    for job, answer in zip(jobs, answers):
        if isinstance(answer, ChatError):
            failure = failure or answer
            failed_records.add(job.record)
            continue
        if isinstance(answer, BaseException):
            raise answer
        reason = apply_answer(chunk[job.record].regions[job.region], job.needed, answer)
        outcome.setdefault(job.record, []).append((job.region, reason, len(job.needed)))
    finished = []
    for k, record in enumerate(chunk):
        if k in broken or k in failed_records:
            continue
        gone = set()
        for g, reason, filled in outcome.get(k, []):
            if reason:
                regions.dropped[reason] += 1
                gone.add(g)
            else:
                regions.kept += 1
                manifest.counts["fields_filled"] += filled
        manifest.counts["regions_already_complete"] += len(record.regions) - len(outcome.get(k, []))
        record.regions = [r for g, r in enumerate(record.regions) if g not in gone]
        if not record.regions:
            records_step.dropped["no_region_left"] += 1
            continue
        records_step.kept += 1
        finished.append(record)
    output.append(finished)
    return failure
