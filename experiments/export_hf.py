"""Exports a trained member of a language-model pretraining run as a Hugging Face OLMo-2
checkpoint (config.json, model.safetensors and the run's tokenizer.json).

  python -m experiments.export_hf --workdir=DIR [--member=0] [--out=DIR/hf/member0]

Every mistake is one line on stderr and exit code 2.
"""

import sys

from absl import app, flags, logging

from rare_tasks.core import disk
from rare_tasks.core.config import ConfigError
from rare_tasks.lm import export

_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of an lm_pretrain run.",
                               required=True)
_MEMBER = flags.DEFINE_integer("member", 0, "Which member (init seed's model) to export.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/hf/member<M>).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  out = _OUT.value or f"{_WORKDIR.value}/hf/member{_MEMBER.value}"
  try:
    folder, step = export.export(_WORKDIR.value, _MEMBER.value, out)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except disk.DiskFull as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"{folder}: member {_MEMBER.value} at step {step} (Olmo2ForCausalLM.from_pretrained)")


if __name__ == "__main__":
  app.run(main)
