"""A weight average ("model soup") of text-model runs trained from the same encoder.

Each run's LoRA adapters add ``(alpha / r) * B @ A`` to a frozen encoder weight. The
mean of n such updates is itself one LoRA update of the summed rank: the A matrices
stacked, the B matrices side by side, each scaled by its run's ``alpha / r`` over the
new one's and divided by n. The average is therefore exact, and since the service
merges the adapters into the encoder, it costs nothing at inference. The heads are
linear over the pooled embedding, so they are averaged parameter by parameter. The
calibration and the operating point are fitted again on dev, as after training.

Run it with ``moderation average-text RUN_DIR RUN_DIR ... --out DIR``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertModel

from models.text.classifier import DEFAULT_WEIGHTS_DIR, Head, verify_weights
from models.text.encoder import build_encoder
from models.text.train import (
    DATA_DIR,
    LORA_ALPHA_PER_RANK,
    Prepared,
    Trainee,
    calibrate_and_save,
)

ADAPTER_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class Run:
    """One trained run as written by ``train``: its adapters, head and how it was made."""

    rank: int
    scale: float  # lora_alpha / r
    targets: frozenset[str]
    adapters: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    report: dict[str, Any]

    @classmethod
    def read(cls, run_dir: Path) -> Run:
        verify_weights(run_dir)
        config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
        return cls(
            rank=int(config["r"]),
            scale=float(config["lora_alpha"]) / int(config["r"]),
            targets=frozenset(config["target_modules"]),
            adapters=load_file(str(run_dir / "adapter" / ADAPTER_FILE)),
            head=torch.load(run_dir / "head.pt", weights_only=True),
            report=json.loads((run_dir / "calibration.json").read_text()),
        )


def average_adapters(runs: Sequence[Run]) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """One LoRA adapter whose update is the mean of the runs' updates."""
    first = runs[0]
    for run in runs[1:]:
        if run.targets != first.targets or run.adapters.keys() != first.adapters.keys():
            raise ValueError("the runs adapt different modules; only like runs average")
    rank = sum(run.rank for run in runs)
    config = LoraConfig(
        r=rank,
        lora_alpha=LORA_ALPHA_PER_RANK * rank,
        target_modules=sorted(first.targets),
        lora_dropout=0.0,
    )
    tensors: dict[str, torch.Tensor] = {}
    for key in first.adapters:
        if ".lora_A." in key:
            tensors[key] = torch.cat([run.adapters[key] for run in runs], dim=0)
        elif ".lora_B." in key:
            parts = [
                run.adapters[key] * (run.scale / LORA_ALPHA_PER_RANK / len(runs)) for run in runs
            ]
            tensors[key] = torch.cat(parts, dim=1)
        else:
            raise ValueError(f"unexpected adapter tensor {key}")
    return config, tensors


def average_heads(runs: Sequence[Run]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([run.head[key] for run in runs]).mean(dim=0) for key in runs[0].head}


def average_runs(
    run_dirs: Sequence[Path],
    *,
    thresholds: Sequence[float],
    max_benign_fpr: float = 0.02,
    data_dir: Path = DATA_DIR,
    out_dir: Path = DEFAULT_WEIGHTS_DIR,
    limit: int | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Average the runs in ``run_dirs`` and write the result like a trained run (the
    calibration and operating point fitted on dev again, ``train.calibrate_and_save``)."""
    if len(run_dirs) < 2:
        raise ValueError("averaging needs at least two runs")
    runs = [Run.read(path) for path in run_dirs]
    config, tensors = average_adapters(runs)
    base_dir = build_encoder()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    base = BertModel.from_pretrained(str(base_dir), add_pooling_layer=False)
    encoder = get_peft_model(base, config)
    loaded: Any = set_peft_model_state_dict(encoder, tensors)  # torch's _IncompatibleKeys
    if loaded.unexpected_keys:
        raise ValueError(f"adapter tensors that fit no module: {loaded.unexpected_keys[:3]}")
    head = Head(int(base.config.hidden_size))
    head.load_state_dict(average_heads(runs))
    progress(f"averaged {len(runs)} runs into one rank-{config.r} adapter; calibrating on dev")
    recipe = {
        "averaged_runs": [
            {
                "sha256": json.loads((path / "MANIFEST.json").read_text())["sha256"],
                **{
                    k: run.report[k]
                    for k in ("epochs", "lr", "seed", "train_examples", "averaged_runs")
                    if k in run.report
                },
            }
            for path, run in zip(run_dirs, runs, strict=True)
        ],
    }
    return calibrate_and_save(
        Trainee(encoder, head),
        tokenizer,
        Prepared.read(data_dir, limit),
        thresholds=thresholds,
        max_benign_fpr=max_benign_fpr,
        out_dir=out_dir,
        recipe=recipe,
        progress=progress,
    )
