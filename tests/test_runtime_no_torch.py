"""The vehicle side runs without torch: with torch made unimportable, core/, config/ and runtime/ import and a real
onnxruntime session segments a frame; the torch backend then says what is missing instead of crashing."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from densehybrid_ros.model.densehybrid import NetworkConfig, build_model
from densehybrid_ros.model.export import export_onnx

torch.set_num_threads(1)

# Installed first on sys.meta_path, so `import torch` (or any torch.* submodule) fails as on a machine without it.
HIDE_TORCH = textwrap.dedent("""
    import sys

    class HideTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"No module named {name!r} (hidden by the test)")
            return None

    sys.meta_path.insert(0, HideTorch())
""")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model(NetworkConfig(num_classes=5, decoder_width=16)).eval()
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export_onnx(net, path, height=64, width=96, dynamic=True,
                taxonomy={"names": list("abcde"), "colours": [[i, i, i] for i in range(5)]})
    return path


def _run_hidden(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HIDE_TORCH + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_hiding_works():
    proc = _run_hidden("import torch")
    assert proc.returncode != 0 and "hidden by the test" in proc.stderr


def test_core_config_and_runtime_run_an_onnxruntime_inference_without_torch(model_path):
    proc = _run_hidden(f"""
        import json, sys
        import numpy as np
        import densehybrid_ros.core, densehybrid_ros.core.scores, densehybrid_ros.core.open_set
        import densehybrid_ros.config, densehybrid_ros.config.model_card
        import densehybrid_ros.runtime
        from densehybrid_ros.runtime import create_backend

        backend = create_backend({str(model_path)!r}, threads=1)
        rgb = np.random.default_rng(0).integers(0, 256, (70, 110, 3), dtype=np.uint8)
        r = backend.infer(rgb)
        print(json.dumps({{"shape": list(r.shape), "dtype": str(r.class_id.dtype),
                           "finite": bool(np.isfinite(r.anomaly_score).all()),
                           "torch_loaded": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}}))
    """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"shape": [70, 110], "dtype": "uint8", "finite": True, "torch_loaded": []}


def test_torch_backend_without_torch_says_so(model_path):
    proc = _run_hidden(f"""
        from densehybrid_ros.runtime import create_backend
        try:
            create_backend({str(model_path)!r}, backend="torch")
        except RuntimeError as e:
            print("ERROR:", e)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: torch backend not available: torch is not installed" in proc.stdout


def test_doctor_runs_without_torch_and_reports_it_absent(model_path):
    proc = _run_hidden(f"""
        import sys
        from densehybrid_ros.cli import main
        sys.exit(main(["doctor", "--models", {str(model_path.parent)!r}]))
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch" in proc.stdout and "not installed" in proc.stdout
    assert "tiny.onnx" in proc.stdout and "sha256 ok" in proc.stdout
