#!/usr/bin/env python3
"""Build the tiny models the tests and the demo run on, with no download.

    python scripts/make_models.py [--out DIR] [--force]

Writes, under ``models/tiny/`` by default (the paths ``models/catalog.yaml`` names):
  tiny_cnn.pt / tiny_cnn.onnx  a 2-conv CNN, input float32 [1, 3, 32, 32]     (tiny-cnn)
  tiny_bert.pt                 a 2-layer BERT encoder, int64 [1, 32] ids+mask (tiny-bert)
  tiny_llm/                    a 2-layer LLaMA causal LM + byte-level tokenizer (tiny-llm)
Weights are random from fixed seeds, so every run builds the same models. Idempotent: an
artefact that already exists is kept (``--force`` rebuilds); a run with everything in place
takes well under a second (torch is imported only when something is missing).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 0
CNN_INPUT = (1, 3, 32, 32)
BERT_SEQ = 32
BERT_VOCAB = 1000
EOS = "<|endoftext|>"


def build_cnn(out: Path) -> None:
    """tiny_cnn.pt (TorchScript) and tiny_cnn.onnx (opset 17, static shapes: DLA-eligible)."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    ).eval()
    example = torch.zeros(CNN_INPUT)
    with torch.no_grad():
        torch.jit.trace(model, example).save(str(out / "tiny_cnn.pt"))
        with warnings.catch_warnings():   # the TorchScript exporter needs no onnxscript
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), str(out / "tiny_cnn.onnx"), dynamo=False,
                              input_names=["input"], output_names=["logits"], opset_version=17)


def _quiet_transformers() -> None:
    """No progress bars or config notices in setup logs."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def build_bert(out: Path) -> None:
    """tiny_bert.pt: BertModel (hidden 128, 2 layers) traced on (input_ids, attention_mask)."""
    import torch
    from transformers import BertConfig, BertModel

    _quiet_transformers()
    torch.manual_seed(SEED)
    config = BertConfig(vocab_size=BERT_VOCAB, hidden_size=128, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=512,
                        max_position_embeddings=BERT_SEQ)
    model = BertModel(config).eval()
    ids = torch.ones((1, BERT_SEQ), dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # tracer warnings about Python control flow
        traced = torch.jit.trace(model, (ids, torch.ones_like(ids)), strict=False)
    traced.save(str(out / "tiny_bert.pt"))


def build_llm(out: Path) -> None:
    """tiny_llm/: a LLaMA-architecture causal LM with random weights and a byte-level
    tokenizer (256 byte tokens + EOS, no merges: encodes any text, decodes it back exactly)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    _quiet_transformers()
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, bos_token=EOS,
                                        pad_token=EOS)
    torch.manual_seed(SEED)
    eos_id = vocab[EOS]
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=eos_id, eos_token_id=eos_id,
                         pad_token_id=eos_id)
    model = LlamaForCausalLM(config).eval()
    target = out / "tiny_llm"
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))


# the file each builder writes last -> the builder: an interrupted build leaves it missing, so
# the next run rebuilds that model
BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny_cnn.onnx": build_cnn,
    "tiny_bert.pt": build_bert,
    "tiny_llm/tokenizer.json": build_llm,
}


def make_models(out: Path, force: bool = False) -> list[str]:
    """Build what is missing (all with ``force``) under ``out``; returns what was built."""
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for marker, build in BUILDERS.items():
        if force or not (out / marker).exists():
            build(out)
            built.append(marker)
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "models" / "tiny",
                        help="output directory (default: models/tiny in the checkout)")
    parser.add_argument("--force", action="store_true", help="rebuild existing artefacts")
    args = parser.parse_args(argv)
    built = make_models(args.out, args.force)
    print(f"[make_models] {args.out}: " + (f"built {', '.join(built)}" if built
                                           else "all tiny models present"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
