"""Re-run the mutants that once survived the node, process, params and launch tests, each in a copy of this
checkout, and show which test kills it (docs/DEVELOPING.md, "Mutation testing").

    .venv/bin/python tests/listed_mutants.py              # all of them (about 2 minutes on 2 shared cores)
    .venv/bin/python tests/listed_mutants.py wire_levels_all_ok

Not a pytest module (pytest collects test_*.py only): it copies the tree, edits one source line, and runs pytest
on the copy with PYTHONPATH pointing there. Exit code 1 when a mutant survives or its source line is gone.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
P = "densehybrid_ros/"
LEVELS = 'LEVELS = {"clear": DiagnosticStatus.OK, "warning": DiagnosticStatus.WARN, "alert": DiagnosticStatus.ERROR}'
ALL_OK = 'LEVELS = {"clear": DiagnosticStatus.OK, "warning": DiagnosticStatus.OK, "alert": DiagnosticStatus.OK}'
RGGB = '"bayer_rggb8": Encoding(1, 1, "bayer", _opencv_code("COLOR_BayerRGGB2RGB", "COLOR_BayerBG2RGB")),'
BGGR = '"bayer_bggr8": Encoding(1, 1, "bayer", _opencv_code("COLOR_BayerBGGR2RGB", "COLOR_BayerRG2RGB")),'
# The decoder's codes of the two patterns exchanged (and below, the test table's names too, as in the audit).
RGGB_SWAPPED = RGGB.replace("RGGB2RGB", "BGGR2RGB").replace("BG2RGB", "RG2RGB")
BGGR_SWAPPED = BGGR.replace("BGGR2RGB", "RGGB2RGB").replace("RG2RGB", "BG2RGB")
# name -> ([(file, original text, mutated text), ...], tests that must fail)
MUTANTS = {
    "wire_levels_all_ok": ([(P + "ros/alert_message.py", LEVELS, ALL_OK)], ["tests/test_alert_message.py"]),
    "wire_levels_all_ok_node_output": ([(P + "ros/alert_message.py", LEVELS, ALL_OK)],
                                       ["tests/test_shipped_defaults.py"]),
    "diagnostics_malformed_ok": ([(P + "ros/diagnostics.py",
                                   'elif problems:\n            st.level, st.message = DiagnosticStatus.WARN,',
                                   'elif problems:\n            st.level, st.message = DiagnosticStatus.OK,')],
                                 ["tests/test_diagnostics.py"]),
    # The node takes tau from the one builder (DetectorConfig.tau_for): negated there, the node process must show it.
    "node_card_tau_negated": ([(P + "config/detector.py", "        return float(card.tau)\n",
                                "        return -float(card.tau)\n")], ["tests/test_shipped_defaults.py"]),
    "builder_card_tau_negated": ([(P + "config/detector.py", "        return float(card.tau)\n",
                                   "        return -float(card.tau)\n")], ["tests/test_detector_params.py"]),
    "empty_model_missing_file": ([(P + "ros/detector_node.py", "def resolve_model_path(model: str) -> Path:\n",
                                   "def resolve_model_path(model: str) -> Path:\n    if not model:\n"
                                   "        return Path('models/missing.onnx')\n")],
                                 ["tests/test_shipped_defaults.py"]),
    "bayer_rggb_bggr_swapped": ([(P + "ros/conversions.py", f"{RGGB}\n    {BGGR}",
                                  f"{RGGB_SWAPPED}\n    {BGGR_SWAPPED}"),
                                 (P + "ros/conversions.py", '"bayer_rggb8": "RGGB", "bayer_bggr8": "BGGR"',
                                  '"bayer_rggb8": "BGGR", "bayer_bggr8": "RGGB"')],
                                ["tests/test_pixel_layouts.py"]),
    "yuv422_yuy2_swapped": ([(P + "ros/conversions.py", '"yuv422": Encoding(2, 1, "uyvy"),',
                              '"yuv422": Encoding(2, 1, "yuyv"),'),
                             (P + "ros/conversions.py", '"yuv422_yuy2": Encoding(2, 1, "yuyv"),',
                              '"yuv422_yuy2": Encoding(2, 1, "uyvy"),')],
                            ["tests/test_pixel_layouts.py"]),
    "worker_300ms_slower_in_process": ([(P + "ros/detector_node.py",
                                         "    def _process(self, frame: Frame) -> None:\n",
                                         "    def _process(self, frame: Frame) -> None:\n        time.sleep(0.3)\n")],
                                       ["tests/test_node_keeps_up.py"]),
    "worker_300ms_slower_between_frames": ([(P + "ros/detector_node.py", "                self._process(frame)\n",
                                             "                self._process(frame)\n"
                                             "                time.sleep(0.3)\n")],
                                           ["tests/test_node_keeps_up.py"]),
}
SKIP = shutil.ignore_patterns(".venv", ".git", "data_cache", "runs", "mutants", "demo_out", "__pycache__",
                              ".pytest_cache", "build", "install", "log")


def run(name: str, edits, tests, work: Path) -> bool:
    copy = work / name
    shutil.copytree(ROOT, copy, symlinks=True, ignore=SKIP)
    for path, old, new in edits:
        f = copy / path
        text = f.read_text()
        if text.count(old) != 1:
            print(f"{name}: the original text is not in {path} once (found {text.count(old)}x); update this script")
            return False
        f.write_text(text.replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=copy,
                          env=env, capture_output=True, text=True, timeout=900)
    why = [line[:150] for line in done.stdout.splitlines() if line.startswith("E ")][:1]
    killed = done.returncode != 0
    print(f"{name}: {'killed' if killed else 'SURVIVED'} by {' '.join(tests)} {why}", flush=True)
    shutil.rmtree(copy, ignore_errors=True)
    return killed


def main(names: list[str]) -> int:
    unknown = set(names) - set(MUTANTS)
    if unknown:
        print(f"unknown mutants {sorted(unknown)}; known: {', '.join(MUTANTS)}")
        return 2
    with tempfile.TemporaryDirectory(prefix="mutants_") as tmp:
        results = [run(n, *MUTANTS[n], Path(tmp)) for n in (names or MUTANTS)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
