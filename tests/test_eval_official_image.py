"""The image benchmarks reproduce their official scoring scripts on files in the official layouts.

Expected values come from independent transcriptions of the official rules written here (never from
pam's scorers); judges are replayed by a chat server on 127.0.0.1 that answers only the exact prompt
the official script would send.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pam.cli import main as pam_cli
from pam.eval import write_predictions

from .helpers.chat_server import ChatServer, last_user_text

FIXTURES = Path(__file__).parent / "fixtures"
JUDGE_ARGS = ["--set", "judge.api_key_env=null", "--set", "judge.backoff_s=0.01"]


def _score(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    code = pam_cli(["score", *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _fails_with_one_line(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    code = pam_cli(["score", *argv])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ---------------------------------------------------------------- DLC-Bench (eval_model_outputs.py)

DLC_PROMPT = (
    "Answer the multiple-choice question based on the text description of an object in an image. You need to follow "
    "these rules:\n1. Do not output any reasoning. Do not perform correction. Please output exactly one answer from "
    "the choices for each question. "
    "Do not repeat the question.\n"
    "2. There is no need for exact matching. Please choose the closest option based on the description.\n\n"
    "The description is:\n{caption}\n\n"
    "From the description above, please answer the following question with one of the choices:\n{question}\n"
)


def dlc_official_questions(class_name: str, qa: list[dict]) -> list[dict]:
    import inflect

    p = inflect.engine()
    plural = class_name != "bus" and p.singular_noun(class_name) is not False
    if plural:
        text = (
            f"Is it likely that the objects in the description are {class_name} or objects of a similar type? "
            "Again, It does not have to be an exact match."
        )
    else:
        text = (
            f"Is it likely that the object in the description is {p.a(class_name)} or an object of a similar type? "
            "Again, It does not have to be an exact match."
        )
    return [{"question": text, "choices": [("Yes", "correct"), ("No", "incorrect")], "type": "recognition"}, *qa]


def dlc_official_prompt(caption: str, q: dict) -> str:
    body = q["question"] + "\n" + "".join(f"{'ABCDE'[i]}. {c}\n" for i, (c, _) in enumerate(q["choices"]))
    return DLC_PROMPT.format(caption=caption, question=body.strip())


def dlc_official_parse(pred: str, choices: list[str]):
    """eval_model_outputs.parse_pred, rule by rule."""
    pred = pred.strip().lower()
    subs = []
    for i, c in enumerate(choices):
        c = c.strip().lower()
        if c == pred or pred == f"{'abcde'[i]}. {c}" or pred == "abcde"[i]:
            return i
        if c in pred:
            subs.append((i, pred.index(c), len(c)))
    if len(subs) == 1:
        return subs[0][0]
    if pred[0] in "abcde" and pred[1] == ".":
        return "abcde".index(pred[0])
    if subs:
        pos = max(s[1] for s in subs)
        return max((s for s in subs if s[1] == pos), key=lambda s: s[2])[0]
    longer = [(i, len(c.strip().lower())) for i, c in enumerate(choices) if pred in c.strip().lower()]
    if longer:
        return max(longer, key=lambda x: x[1])[0]
    if pred[0] in "abcde" and (len(pred.strip()) == 1 or pred[1] == "\n"):
        return "abcde".index(pred[0])
    return None


def dlc_official_scores(qa: dict, names: dict, answers: dict) -> tuple[float, float]:
    """avg_pos, avg_neg as eval_model_outputs.py computes them from the judge's answers."""
    pos, neg = {}, {}
    for key in qa:
        questions = dlc_official_questions(names[key], qa[key])
        results = []
        for q, a in zip(questions, answers[key], strict=True):
            idx = dlc_official_parse(a, [c for c, _ in q["choices"]])
            results.append(q["choices"][idx][1] if idx is not None else 0)
        recognized = {"correct": True, "incorrect": False}[results[0]]
        p = [r if recognized else min(0, r) for q, r in zip(questions[1:], results[1:]) if q["type"] == "positive"]
        n = [r if recognized else min(0, r) for q, r in zip(questions[1:], results[1:]) if q["type"] == "negative"]
        pos[key] = sum(p) / len(p)
        neg[key] = sum(n) / len(n) if n else None
    valid = [v for v in neg.values() if v is not None]
    return sum(pos.values()) / len(pos), sum(valid) / len(valid)


def _dlc_replay(folder: Path, captions: dict, answers: dict) -> dict:
    qa = json.loads((folder / "qa.json").read_text())
    names = json.loads((folder / "class_names.json").read_text())
    table = {}
    for key in qa:
        for q, a in zip(dlc_official_questions(names[key], qa[key]), answers[key], strict=True):
            table[dlc_official_prompt(captions[key], q)] = a
    return table


def test_dlc_bench_reproduces_dam_3b_published_scores(tmp_path, capsys):
    """DAM-3B's released captions and cached judge answers give DAM's README numbers, 51.0 / 83.0 / 67.0."""
    pytest.importorskip("inflect")
    folder = FIXTURES / "dlc_bench"
    captions = json.loads((folder / "dam_3b_v1.json").read_text())
    answers = json.loads((folder / "dam_3b_v1_judge_responses.json").read_text())
    qa = json.loads((folder / "qa.json").read_text())
    names = json.loads((folder / "class_names.json").read_text())
    table = _dlc_replay(folder, captions, answers)
    assert len(table) == 992
    pred = write_predictions(tmp_path / "predictions.jsonl", [{"id": k, "prediction": v} for k, v in captions.items()])

    def reply(request, index):
        assert request["model"] == "meta-llama/Meta-Llama-3.1-8B-Instruct"
        assert (request["temperature"], request["max_tokens"], request["top_p"]) == (0.0, 300, 1)
        assert len(request["messages"]) == 1
        return table[last_user_text(request)]  # a prompt the official script would not send: KeyError, HTTP 500

    with ChatServer(reply, max_requests=1100, max_seconds=120) as server:
        got = _score(
            capsys,
            [
                "dlc_bench",
                str(pred),
                "--data",
                str(folder),
                "--judge-url",
                server.base_url,
                *JUDGE_ARGS,
                "--set",
                "judge.max_workers=8",
                "--set",
                f"judge.cache_dir={tmp_path / 'cache'}",
                "--set",
                "judge.max_tries=1",
            ],
        )
        assert server.count == 992
    pos, neg = dlc_official_scores(qa, names, answers)
    assert abs(got["positive"] - 100 * pos) < 1e-6 and abs(got["negative"] - 100 * neg) < 1e-6
    assert abs(got["average"] - 50 * (pos + neg)) < 1e-6
    assert (f"{got['positive'] / 100:.3f}", f"{got['negative'] / 100:.3f}", f"{got['average'] / 100:.3f}") == (
        "0.510",
        "0.830",
        "0.670",
    )
    assert got["num_items"] == 100 and got["unrecognized"] == 8


def test_dlc_bench_parser_rules():
    from pam.eval.benchmarks.dlc_bench import parse_choice

    choices = ["The wing is not mentioned.", "The wing is mentioned and is grey.", "Grey", "wing"]
    cases = [
        "B",
        "b. the wing is mentioned and is grey.",
        "C.",
        "grey",
        "the wing is mentioned",
        "D\nmore",
        "no idea at all",
        "the wing is not mentioned. grey",
        "a. something else",
        "wing grey",
    ]
    for answer in cases:
        assert parse_choice(answer, choices) == dlc_official_parse(answer, choices), answer
    assert (
        parse_choice("", choices) is None and parse_choice("e", ["No", "Nah"]) is None
    )  # the official parser crashes on both


def _dlc_folder(tmp_path: Path, qa: dict, names: dict) -> Path:
    folder = tmp_path / "DLC-bench"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qa.json").write_text(json.dumps(qa))
    (folder / "class_names.json").write_text(json.dumps(names))
    return folder


def test_dlc_bench_malformed_files_name_file_record_and_field(tmp_path, capsys):
    good_q = {"question": "Which?", "choices": [["a", 1], ["b", 0]], "type": "positive"}
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": "5", "prediction": "x"}])
    cases = [
        ({"5": [{**good_q, "type": "recognition"}]}, {"5": "cup"}, ("qa.json", "object 5, question 0", "'type'")),
        (
            {"5": [{**good_q, "choices": [["a", "high"], ["b", 0]]}]},
            {"5": "cup"},
            ("qa.json", "object 5, question 0", "'choices'"),
        ),
        ({"5": [good_q]}, {}, ("class_names.json", "object 5", "class name")),
    ]
    for n, (qa, names, needles) in enumerate(cases):
        folder = _dlc_folder(tmp_path / str(n), qa, names)
        _fails_with_one_line(
            capsys,
            ["dlc_bench", str(pred), "--data", str(folder), "--judge-url", "http://127.0.0.1:9/v1", *JUDGE_ARGS],
            *needles,
        )


# ---------------------------------------------------------------- Ferret-Bench (eval_gpt_review_3newclass.py)

FERRET_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."


def ferret_official_content(context: str, question: str, ans1: str, ans2: str) -> str:
    role, prompt = "Assistant", FERRET_RULE  # rule.json's refer_reason entry
    return (
        f"[Context]\\{context}\n\n[Question]\n{question}\n\n[{role} 1]\n{ans1}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{ans2}\n\n[End of {role} 2]\n\n[System]\n{prompt}\n\n"
    )


FERRET_RULE = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user question "
    "displayed above. The user asks the question about specific region of an image. For your reference, the visual "
    "content in the image is represented with five descriptive sentences describing the same image. In addition, "
    "specific object locations within the image are given, along with detailed coordinates. These coordinates are in "
    "the form of bounding boxes, represented as (x1, y1, x2, y2) with floating numbers ranging from 0 to 1. These "
    "values correspond to the top left x, top left y, bottom right x, and bottom right y. Also, the relationships "
    "between pairs of objects are provided, in the format of object -> relationship -> subject, where the "
    "object/subject are indexed by object id from previous object lists as well as the object names. Also, several "
    "region description are given, each describing a box region of image, with detailed coordinates. \nPlease rate the "
    "spatial correspondence, helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n"
    "Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
    "respectively. The two scores are separated by a space.\nIn the subsequent line, please provide a comprehensive "
    "explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses "
    "were presented does not affect your judgment."
)


def ferret_official_postprocess(answer: str) -> str:
    for match in re.findall(r"\[.*?\]", answer):
        answer = answer.replace(" " + match, "")
    return answer


def ferret_official_parse(review: str) -> list[float]:
    try:
        sp = review.split("\n")[0].replace(",", " ").split(" ")
        return [float(sp[0]), float(sp[1])] if len(sp) == 2 else [-1, -1]
    except Exception:
        return [-1, -1]


def ferret_official_ratio(tuples: list[list[float]]) -> float:
    stats = [round(x, 3) for x in np.asarray(tuples).mean(0).tolist()]
    return round(stats[1] / stats[0] * 100, 1)


FERRET_ANSWERS = {  # PAM's answers: boxes written " [..]" must reach the judge removed
    0: "It is the windshield [0.850, 0.523, 0.898, 0.583] of the locomotive, letting the driver see ahead.",
    1: "They are knee pads worn by the catcher to protect the legs.",
    2: "A small sign [0.478, 0.464, 0.492, 0.491] that shows the way.",
}
FERRET_REVIEWS = {
    0: "8 7\nAssistant 2 is close.",
    1: "8, 6\nA comma and a space make three fields: unparsed.",
    2: "9 4\nAssistant 2 is wrong.",
}


def _ferret_replay(folder: Path, questions_from: Path) -> dict:
    qs = {
        json.loads(line)["question_id"]: json.loads(line)
        for line in (questions_from / "question.jsonl").read_text().splitlines()
    }
    refs = {
        json.loads(line)["question_id"]: json.loads(line)["text"]
        for line in (folder / "answer.jsonl").read_text().splitlines()
    }
    ctx = {
        json.loads(line)["image"]: json.loads(line)["text"]
        for line in (folder / "context.jsonl").read_text().splitlines()
    }
    return {
        ferret_official_content(
            ctx[q["image"]], q["text"], refs[i], ferret_official_postprocess(FERRET_ANSWERS[i])
        ): FERRET_REVIEWS[i]
        for i, q in qs.items()
    }


def _ferret_server(table: dict):
    def reply(request, index):
        assert request["model"] == "gpt-4-0314" and request["temperature"] == 0.2 and request["max_tokens"] == 1024
        assert request["messages"][0] == {"role": "system", "content": FERRET_SYSTEM}
        return table[last_user_text(request)]

    return ChatServer(reply, max_requests=50, max_seconds=60)


@pytest.mark.parametrize("layout", ["ferret", "osprey"])
def test_ferret_reproduces_the_official_review_and_summary(tmp_path, capsys, layout):
    folder = FIXTURES / "ferret_refer_reason"
    data = folder if layout == "ferret" else folder / "box_refer_reason.json"
    table = _ferret_replay(folder, folder)
    # predictions in another order than the questions: paired by question_id
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": FERRET_ANSWERS[i]} for i in (2, 0, 1)])
    with _ferret_server(table) as server:
        got = _score(
            capsys,
            [
                "ferret",
                str(pred),
                "--data",
                str(data),
                "--judge-url",
                server.base_url,
                *JUDGE_ARGS,
                "--set",
                f"judge.cache_dir={tmp_path / 'cache'}",
                "--set",
                "judge.max_tries=1",
            ],
        )
        assert server.count == 3
    tuples = [ferret_official_parse(FERRET_REVIEWS[i]) for i in (0, 1, 2)]
    assert tuples[1] == [-1, -1]
    assert abs(got["ratio"] - ferret_official_ratio(tuples)) < 1e-6 and got["ratio"] == round(
        round(10 / 3, 3) / round(16 / 3, 3) * 100, 1
    )
    assert got["unparsed"] == 1 and got["num_items"] == 3


def test_ferret_reads_the_box_from_the_question_and_osprey_box(tmp_path):
    from pam.eval import get_benchmark

    folder = FIXTURES / "ferret_refer_reason"
    ferret = get_benchmark("ferret").read_items(folder)
    osprey = get_benchmark("ferret").read_items(folder / "box_refer_reason.json")
    assert (
        ferret[0]["box_norm"] == [0.850, 0.523, 0.898, 0.583]
        and ferret[0]["text"] == "What might be the purpose of the object the region on the train?"
    )
    assert osprey[0]["bbox"] == [544.0, 223.32, 30.72, 25.62] and osprey[0]["text"] == ferret[0]["text"]
    assert [it["question"] for it in osprey] == [
        it["question"] for it in ferret
    ]  # the judge reads Ferret's question text
    # the box the model is prompted with: normalised x image size (COCO 640 wide) is Osprey's pixel box, to rounding
    assert np.allclose(np.array(ferret[0]["box_norm"][:2]) * [640, 427], osprey[0]["bbox"][:2], atol=0.5)


def test_ferret_malformed_files_name_file_record_and_field(tmp_path, capsys):
    src = FIXTURES / "ferret_refer_reason"
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": "x"} for i in (0, 1, 2)])

    def folder_with(name: str, text: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        for f in ("question.jsonl", "answer.jsonl", "context.jsonl", "box_refer_reason.json"):
            (folder / f).write_text((src / f).read_text())
        target = "box_refer_reason.json" if name.startswith("osprey") else "question.jsonl"
        (folder / target).write_text(text)
        return folder

    lines = (src / "question.jsonl").read_text().splitlines()
    no_box = folder_with(
        "nobox", "\n".join([lines[0], lines[1].replace("[0.546, 0.625, 0.626, 0.801]", "here"), lines[2]])
    )
    _fails_with_one_line(
        capsys,
        ["ferret", str(pred), "--data", str(no_box), "--judge-url", "http://127.0.0.1:9/v1"],
        "question.jsonl:2",
        "'text'",
    )
    no_image = folder_with("noimage", "\n".join([lines[0], lines[1], lines[2].replace('"image": ', '"picture": ')]))
    _fails_with_one_line(
        capsys,
        ["ferret", str(pred), "--data", str(no_image), "--judge-url", "http://127.0.0.1:9/v1"],
        "question.jsonl:3",
        "'image'",
    )
    entries = json.loads((src / "box_refer_reason.json").read_text())
    entries[1]["annotation"]["bbox"] = [1, 2, 3]
    bad_osprey = folder_with("osprey", json.dumps(entries))
    _fails_with_one_line(
        capsys,
        [
            "ferret",
            str(pred),
            "--data",
            str(bad_osprey / "box_refer_reason.json"),
            "--judge-url",
            "http://127.0.0.1:9/v1",
        ],
        "box_refer_reason.json: entry 1",
        "'bbox'",
    )


# ---------------------------------------------------------------- RefCOCOg (GLaMM's and Osprey's layouts)


def _coco_eval(preds: dict, refs: dict) -> dict:
    """pycocoevalcap's own COCO pipeline: PTB tokenizer, then METEOR and CIDEr, x100."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": preds[k]}] for k in refs})
    return {"meteor": 100 * Meteor().compute_score(gts, res)[0], "cider": 100 * Cider().compute_score(gts, res)[0]}


def osprey_official_cleanup(outputs: str) -> str:
    outputs = outputs.strip()
    if ":" in outputs:
        outputs = outputs.split(":")[1]
    return outputs.replace(".", ".\n")


REFCOCOG_PRED = {
    101: "Region: a man in a blue shirt holding a bat. He stands.",
    102: "the white dog lying on the grass",
    103: "A woman: sitting on the left: bench",
}
REFCOCOG_REF = {
    101: "man in blue shirt holding a baseball bat",
    102: "a white dog lying on green grass",
    103: "woman sitting on the bench on the left",
}


def _write_refcocog(tmp: Path, layout: str) -> Path:
    poly = [[10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0]]
    if layout == "osprey":  # finetune_refcocog_val_with_mask.json: caption on images, segmentation on annotations
        doc = {
            "images": [
                {
                    "id": i,
                    "file_name": f"COCO_train2014_{i:012d}.jpg",
                    "height": 60,
                    "width": 80,
                    "caption": REFCOCOG_REF[i],
                    "original_id": 9000 + i,
                }
                for i in REFCOCOG_REF
            ],
            "annotations": [
                {
                    "id": i,
                    "image_id": i,
                    "segmentation": poly,
                    "bbox": [10.0, 10.0, 40.0, 30.0],
                    "area": 1200.0,
                    "iscrowd": 0,
                    "category_id": 1,
                }
                for i in REFCOCOG_REF
            ],
        }
        name = "finetune_refcocog_val_with_mask.json"
    else:  # finetune_refcocog_val_captions.json: caption on annotations
        doc = {
            "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 60, "width": 80} for i in REFCOCOG_REF],
            "annotations": [
                {"id": i, "image_id": i, "bbox": [10.0, 10.0, 40.0, 30.0], "caption": REFCOCOG_REF[i]}
                for i in REFCOCOG_REF
            ],
        }
        name = "finetune_refcocog_val_captions.json"
    path = tmp / name
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(("bench", "layout"), [("refcocog", "osprey"), ("refcocog", "glamm"), ("vg", "glamm")])
def test_region_caption_layouts_hand_the_official_captions_to_the_scorer(tmp_path, capsys, monkeypatch, bench, layout):
    """Java-free: what reaches pycocoevalcap is each layout's reference and the cleaned answer, paired by id."""
    from pam.eval.benchmarks import _common

    seen = []
    monkeypatch.setattr(
        _common,
        "caption_metrics",
        lambda p, r, metrics: seen.append((list(p), [list(x) for x in r])) or {"meteor": 0.5, "cider": 1.0},
    )
    data = _write_refcocog(tmp_path, layout)
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": REFCOCOG_PRED[i]} for i in (103, 101, 102)])
    got = _score(capsys, [bench, str(pred), "--data", str(data)])
    clean = osprey_official_cleanup if layout == "osprey" else (lambda t: t)
    pairs = sorted(zip(*seen[0]), key=lambda pr: pr[1])
    assert pairs == sorted(((clean(REFCOCOG_PRED[i]), [REFCOCOG_REF[i]]) for i in REFCOCOG_REF), key=lambda pr: pr[1])
    assert got == {"meteor": 50.0, "cider": 100.0, "num_items": 3}


@pytest.mark.soak
@pytest.mark.skipif(__import__("shutil").which("java") is None, reason="pycocoevalcap needs Java")
@pytest.mark.parametrize(("bench", "layout"), [("refcocog", "osprey"), ("refcocog", "glamm"), ("vg", "glamm")])
def test_region_caption_layouts_score_as_their_official_pipelines(tmp_path, capsys, bench, layout):
    """GLaMM's evaluate.py (COCOEvalCap: PTB tokenizer, METEOR, CIDEr) and Osprey's refcocog_eval.py clean-up."""
    data = _write_refcocog(tmp_path, layout)
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in REFCOCOG_PRED.items()])
    got = _score(capsys, [bench, str(pred), "--data", str(data)])
    clean = osprey_official_cleanup if layout == "osprey" else (lambda t: t)
    expected = _coco_eval({i: clean(t) for i, t in REFCOCOG_PRED.items()}, {i: [r] for i, r in REFCOCOG_REF.items()})
    assert abs(got["meteor"] - expected["meteor"]) < 1e-6 and abs(got["cider"] - expected["cider"]) < 1e-6
    assert got["num_items"] == 3


def test_refcocog_osprey_layout_reads_image_captions(tmp_path):
    from pam.eval import get_benchmark

    items = get_benchmark("refcocog").read_items(_write_refcocog(tmp_path, "osprey"))
    assert [(it["id"], it["image"], it["references"]) for it in items][:1] == [
        (101, "000000000101.jpg", [REFCOCOG_REF[101]])
    ]
    assert osprey_official_cleanup(REFCOCOG_PRED[103]) == " sitting on the left"


def test_refcocog_malformed_files_name_file_record_and_field(tmp_path, capsys):
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in REFCOCOG_PRED.items()])
    data = _write_refcocog(tmp_path, "osprey")
    doc = json.loads(data.read_text())
    del doc["images"][1]["caption"]
    data.write_text(json.dumps(doc))
    _fails_with_one_line(
        capsys,
        ["refcocog", str(pred), "--data", str(data)],
        "finetune_refcocog_val_with_mask.json",
        "images[1]",
        "'caption'",
    )
    doc = json.loads(_write_refcocog(tmp_path, "osprey").read_text())
    doc["annotations"][2]["segmentation"] = "polygon"
    data.write_text(json.dumps(doc))
    _fails_with_one_line(capsys, ["refcocog", str(pred), "--data", str(data)], "annotations[2]", "'segmentation'")


# ---------------------------------------------------------------- Ref-L4 (VideoRefer's infer_refl4.py rows, clair.py)

REF_L4_ROWS = [  # the columns of ref-l4-val.parquet; older releases name the id column ann_id
    {
        "ori_index": 0,
        "image_id": 11,
        "file_name": "objects365_v2_01868573.jpg",
        "caption": "the brown leather handbag hanging on the chair back",
        "bbox": [12.0, 8.0, 30.0, 20.0],
        "height": 60,
        "width": 80,
        "ann_id": 7001,
        "split": "val",
    },
    {
        "ori_index": 1,
        "image_id": 12,
        "file_name": "COCO_train2014_000000000012.jpg",
        "caption": "the white cup on the table",
        "bbox": [1.0, 1.0, 10.0, 10.0],
        "height": 60,
        "width": 80,
        "ann_id": 7002,
        "split": "val",
    },
    {
        "ori_index": 2,
        "image_id": 13,
        "file_name": "objects365_v1_00023118.jpg",
        "caption": "a red fire hydrant next to the curb",
        "bbox": [40.0, 20.0, 15.0, 30.0],
        "height": 60,
        "width": 80,
        "ann_id": 7003,
        "split": "val",
    },
]
REF_L4_PRED = {7001: "A brown handbag on a chair.", 7003: "A red fire hydrant on the sidewalk."}


def videorefer_official_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "objects365" in r["file_name"]]


def _write_ref_l4(tmp: Path, kind: str) -> Path:
    path = tmp / f"ref-l4-val.{kind}"
    if kind == "parquet":
        import pandas as pd

        pd.DataFrame(REF_L4_ROWS).to_parquet(path)
    else:
        path.write_text(json.dumps(REF_L4_ROWS))
    return path


@pytest.mark.parametrize("kind", ["parquet", "json"])
def test_ref_l4_scores_the_objects365_rows_by_their_ann_id(tmp_path, capsys, monkeypatch, kind):
    if kind == "parquet":
        pytest.importorskip("pyarrow")
    from pam.eval.benchmarks import _common

    seen = []
    monkeypatch.setattr(
        _common,
        "caption_metrics",
        lambda p, r, metrics: (
            seen.append((list(p), [list(x) for x in r], metrics)) or {"rouge_l": 0.3, "meteor": 0.2, "cider": 0.7}
        ),
    )
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in REF_L4_PRED.items()])
    got = _score(capsys, ["ref_l4", str(pred), "--data", str(_write_ref_l4(tmp_path, kind))])
    kept = videorefer_official_rows(REF_L4_ROWS)
    pairs = sorted(zip(seen[0][0], seen[0][1]))
    assert pairs == sorted((REF_L4_PRED[r["ann_id"]], [r["caption"]]) for r in kept)
    assert seen[0][2] == ("ROUGE_L", "METEOR", "CIDEr") and got == {
        "rouge_l": 30.0,
        "meteor": 20.0,
        "cider": 70.0,
        "num_items": 2,
    }
    # rows=all keeps the COCO row too, so its prediction is then required
    capsys.readouterr()
    assert (
        pam_cli(["score", "ref_l4", str(pred), "--data", str(_write_ref_l4(tmp_path, kind)), "--set", "rows=all"]) == 2
    )
    assert "7002" in capsys.readouterr().err


CLAIR_PROMPT = (
    "You are trying to tell if a candidate set of captions is describing the same image as a reference set of "
    "captions.\n"
    "Candidate set:\n{candidate_statements}\nReference set:\n{target_statements}\n"
    "On a precise scale from 0 to 100, how likely is it that the candidate set is describing the same image as the "
    'reference set? (JSON format, with a key "score", value between 0 and 100, and a key "reason" with a string '
    "value.)\n"
)


def clair_official_parse(response: str) -> float:
    """clair.py's reading of one answer (score / 100); the five retries give the same cached answer, then 0."""
    try:
        parsed = "{" + response.split("{")[1].split("}")[0] + "}"
        return float(json.loads(parsed)["score"]) / 100
    except Exception:
        found = re.findall(r"\d*\.?\d+", response)
        if found:
            score = float(found[0])
            return (score * 100 if score < 1 else score) / 100
        return 0.0


def test_ref_l4_clair_protocol_reproduces_clair_py(tmp_path, capsys):
    rows = [
        *REF_L4_ROWS,
        {**REF_L4_ROWS[0], "file_name": "objects365_v2_00000001.jpg", "ann_id": 7004, "caption": "a black dog"},
    ]
    data = tmp_path / "ref-l4-val.json"
    data.write_text(json.dumps(rows))
    preds = {**REF_L4_PRED, 7004: "A cat."}
    answers = {
        7001: 'Sure. {"score": 85, "reason": "same bag"} done',
        7003: "Score: 0.62 (reason: close)",
        7004: "I cannot tell.",
    }
    table = {}
    for r in videorefer_official_rows(rows):
        prompt = CLAIR_PROMPT.format(
            candidate_statements=f"- {preds[r['ann_id']]}\n", target_statements=f"- {r['caption']}\n"
        )
        table[prompt] = answers[r["ann_id"]]
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in preds.items()])
    with ChatServer(lambda request, index: table[last_user_text(request)], max_requests=20, max_seconds=60) as server:
        got = _score(
            capsys,
            [
                "ref_l4",
                str(pred),
                "--data",
                str(data),
                "--set",
                "protocol=clair",
                "--judge-url",
                server.base_url,
                "--judge-model",
                "gpt-4-turbo-2024-04-09",
                *JUDGE_ARGS,
                "--set",
                f"judge.cache_dir={tmp_path / 'c'}",
            ],
        )
        assert server.count == 3
    expected = 100 * sum(clair_official_parse(answers[i]) for i in (7001, 7003, 7004)) / 3
    assert abs(got["clair"] - expected) < 1e-6 and abs(expected - (85 + 62 + 0) / 3) < 1e-9
    assert got["clair_unparsed"] == 1 and got["num_items"] == 3


def test_ref_l4_malformed_rows_name_file_row_and_field(tmp_path, capsys):
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in REF_L4_PRED.items()])
    for n, (change, field) in enumerate([({"bbox": [1, 2, 3]}, "'bbox'"), ({"ann_id": None}, "'id'")]):
        rows = [dict(r) for r in REF_L4_ROWS]
        rows[2].update(change)
        if change.get("ann_id", 0) is None:
            del rows[2]["ann_id"]
        data = tmp_path / f"ref-l4-val-{n}.json"
        data.write_text(json.dumps(rows))
        _fails_with_one_line(capsys, ["ref_l4", str(pred), "--data", str(data)], f"ref-l4-val-{n}.json: row 2", field)


# ---------------------------------------------------------------- LVIS / PACO (Osprey's lvis_paco_eval.py)

OSPREY_ENTRIES = [  # lvis_val_1k_category.json / paco_val_1k_category.json: categories paired with annotations by index
    {
        "file_name": "000000000139.jpg",
        "height": 60,
        "width": 80,
        "categories": ["baseball_bat", "mug:handle"],
        "annotations": [
            {"bbox": [20, 10, 40, 30], "segmentation": [[20, 10, 60, 10, 60, 40, 20, 40]]},
            {"bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        ],
    },
    {
        "file_name": "000000000285.jpg",
        "height": 60,
        "width": 80,
        "categories": ["teddy_bear"],
        "annotations": [{"bbox": [5, 5, 30, 30], "segmentation": [[5, 5, 35, 5, 35, 35, 5, 35]]}],
    },
]
OSPREY_PRED = {"0/0": "Category: Baseball bat.", "0/1": "the handle of a mug, white", "1/0": "teddy bear: brown: toy"}


def osprey_official_scores(entries: list[dict], preds: dict, model) -> tuple[float, float]:
    """lvis_paco_eval.py: clean both texts, cosine of the raw-case embeddings, word IoU of the lower-cased texts."""
    from sentence_transformers import util

    sims, ious = [], []
    for k, entry in enumerate(entries):
        for i, category in enumerate(entry["categories"]):
            category = category.replace("_", " ").replace(":", " ")
            outputs = preds[f"{k}/{i}"].strip()
            if ":" in outputs:
                outputs = outputs.split(":")[1]
            outputs = outputs.replace(".", " ").replace(":", " ").replace(",", " ")
            sims.append(
                float(
                    util.cos_sim(
                        model.encode(outputs, convert_to_tensor=True), model.encode(category, convert_to_tensor=True)
                    )[0][0]
                )
            )
            a, b = set(outputs.lower().split()), set(category.lower().split())
            ious.append(len(a & b) / len(a | b))
    return sum(sims) / len(sims), sum(ious) / len(ious)


def test_lvis_paco_reproduce_lvis_paco_eval(tmp_path, capsys):
    from pam.eval.metrics import load_similarity_model

    model = load_similarity_model()  # the same all-MiniLM-L6-v2 weights Osprey's script loads
    sim, iou = osprey_official_scores(OSPREY_ENTRIES, OSPREY_PRED, model)
    assert abs(iou - (1 + 2 / 6 + 0) / 3) < 1e-12
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in OSPREY_PRED.items()])
    for bench in ("lvis", "paco"):
        data = tmp_path / f"{bench}_val_1k_category.json"
        data.write_text(json.dumps(OSPREY_ENTRIES))
        got = _score(capsys, [bench, str(pred), "--data", str(data)])
        assert abs(got["semantic_iou"] - 100 * iou) < 1e-6
        assert (
            abs(got["semantic_similarity"] - 100 * sim) < 1e-4
        )  # float32 embeddings, encoded in a batch vs one at a time
        assert got["num_items"] == 3


def test_lvis_malformed_file_names_file_entry_and_field(tmp_path, capsys):
    entries = json.loads(json.dumps(OSPREY_ENTRIES))
    entries[1]["categories"] = [""]
    data = tmp_path / "lvis_val_1k_category.json"
    data.write_text(json.dumps(entries))
    pred = write_predictions(tmp_path / "p.jsonl", [{"id": i, "prediction": t} for i, t in OSPREY_PRED.items()])
    _fails_with_one_line(
        capsys, ["lvis", str(pred), "--data", str(data)], "lvis_val_1k_category.json: entry 1", "category 0"
    )


def test_judge_prompt_files_name_their_source():
    from importlib import resources

    from pam.eval.benchmarks._prompts import load_prompt

    folder = resources.files("pam.eval.benchmarks").joinpath("prompts")
    names = sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    assert names == ["clair", "dlc_bench", "ferret_refer_reason"]
    for name in names:
        source = load_prompt(name)["source"]
        assert (
            re.fullmatch(r"[\w.-]+/[\w.-]+", source["repo"])
            and re.fullmatch(r"[0-9a-f]{40}", source["commit"])
            and source["path"]
        )
    assert load_prompt("dlc_bench")["prompt"] == DLC_PROMPT.replace("{caption}", "{pred_caption}").replace(
        "{question}", "{question_text_str}"
    )
    assert load_prompt("ferret_refer_reason")["prompt"] == FERRET_RULE
