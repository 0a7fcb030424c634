"""What the CLI end-to-end scripts share: their arguments (SWRUN WORKDIR), the tiny model they run on, and a tally
of checks that fails the script at the end."""
import os
import sys

from tiny_model import tiny_model

failures = []


def setup_tiny_gemma3():
    """Returns (swrun, workdir, model path) with the model written: 7 layers, layer 5 a global (dense) layer,
    the rest sliding with a window of 8."""
    swrun, work = sys.argv[1:3]
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "tiny_gemma3.gguf")
    tiny_model(model, n_layer=7)
    return swrun, work, model


def check(label, cond, detail=""):
    print(f"{'ok  ' if cond else 'FAIL'} {label} {detail}")
    if not cond:
        failures.append(label)


def finish():
    if failures:
        print("FAILED:", ", ".join(failures))
        sys.exit(1)
    print("all checks passed")
