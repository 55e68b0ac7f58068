"""What constrained decoding costs: tokens per second of the Qwen2.5-VL key-frame judge writing its verdict
under the rubric's JSON schema (xgrammar's token mask on every step), against the same judge writing the same
number of tokens freely. Both are greedy, from the same inputs, with the same number of new tokens, and
alternate; the schema is compiled once beforehand (a run compiles each role's schema once), timed apart.

    python -m bench.decoding                                            # the tiny judge on CPU
    python -m bench.decoding --judge-path /models/Qwen2.5-VL-7B-Instruct --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from transformers import LogitsProcessorList
from xgrammar.contrib.hf import LogitsProcessor as GrammarLogitsProcessor

from bench.bad_inputs import moving_frames
from models.checkpoints import resolve_checkpoint
from models.qwen_vl import QwenVLImageJudge
from prompts.loader import PromptBook
from tools.judge import JudgeAnswer, JudgeConfig, listed_criteria


def rubric() -> tuple[str, tuple[str, ...]]:
    """The built-in key-frame rubric, rendered, and its criteria."""
    book = PromptBook()
    prompt = book.render(
        "judge_keyframe.j2",
        instruction="Make it a pencil sketch.",
        target_description="A pencil sketch.",
        category="global_style",
        local=False,
    )
    return prompt.text, listed_criteria(book.source("judge_keyframe.j2").text)


def timed_generate(judge: QwenVLImageJudge, inputs, new_tokens: int, grammar) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    processors = LogitsProcessorList([GrammarLogitsProcessor(grammar)] if grammar is not None else [])
    if judge.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.inference_mode():
        out = judge.loaded.model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=0 if grammar is not None else new_tokens,  # free text: exactly as many tokens
            do_sample=False,
            logits_processor=processors,
        )
    if judge.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out.shape[1] - inputs["input_ids"].shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge-path", default="tiny:qwen2_5_vl", help="a Qwen2.5-VL folder, or tiny:qwen2_5_vl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-reason-chars", type=int, default=JudgeConfig().max_reason_chars)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = resolve_checkpoint("keyframe_judge", args.judge_path, False)
    judge = QwenVLImageJudge(path, args.device, args.dtype, max_new_tokens=4400)  # as the full profile
    prompt, criteria = rubric()
    schema = JudgeAnswer.for_criteria(criteria, args.max_reason_chars).model_json_schema()
    frames = moving_frames(2, 224, 224)
    inputs = judge.prepare_inputs(prompt, images=[frames[0], frames[1]], videos=[])

    start = time.perf_counter()
    grammar = judge.loaded.grammar(schema)
    compile_s = time.perf_counter() - start
    tokens = timed_generate(judge, inputs, judge.max_new_tokens, grammar)[1]  # the verdict's length
    timed_generate(judge, inputs, tokens, None)
    constrained, free = [], []
    for _ in range(args.repeats):  # interleaved, so that a busy machine slows both alike
        constrained.append(timed_generate(judge, inputs, judge.max_new_tokens, grammar))
        free.append(timed_generate(judge, inputs, tokens, None))

    rate = {name: statistics.median(n / s for s, n in runs) for name, runs in (("schema", constrained), ("free", free))}
    device = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    )
    sys.stdout.write(
        f"judge {judge.spec_id} on {device}, {len(criteria)} criteria, reasons <= {args.max_reason_chars} chars, "
        f"{tokens} new tokens, median of {args.repeats}\n"
        f"  schema compile (once per role)  {compile_s * 1000:8.1f} ms\n"
        f"  with the schema (xgrammar)      {rate['schema']:8.1f} tokens/s\n"
        f"  free text                       {rate['free']:8.1f} tokens/s\n"
        f"  overhead                        {(rate['free'] / rate['schema'] - 1) * 100:8.1f} % "
        f"({(1 / rate['schema'] - 1 / rate['free']) * 1000:.2f} ms a token)\n"
    )


if __name__ == "__main__":
    main()
