import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpuimg import _boundary, _kernels

nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="needs the CuPy/NVRTC wheels")


def test_every_declared_specialisation_compiles_with_nvrtc():
    results = _kernels.compile_all()
    declared = {(f.filename, ne) for f in _kernels.families() for ne in f.specialisations}
    assert {(f, ne) for f, ne, _ in results} == declared
    assert all(size > 0 for *_, size in results)
    # every .cu file in kernels/ belongs to a declared family
    files = {p.name for p in _kernels.kernel_dir().glob("*.cu")}
    assert files == {f.filename for f in _kernels.families()}


def test_broken_source_fails_compilation(tmp_path, monkeypatch):
    (tmp_path / "broken.cu").write_text("template<typename T> __global__ void k(T* x) { x[0] = ; }\n")
    monkeypatch.setattr(_kernels, "kernel_dir", lambda: tmp_path)
    fam = _kernels.KernelFamily.__new__(_kernels.KernelFamily)
    fam.filename, fam.specialisations, fam.options = "broken.cu", ("k<float>",), _kernels.DEFAULT_OPTIONS
    with pytest.raises(RuntimeError, match="NVRTC failed on broken.cu"):
        _kernels.compile_all(families_=[fam])


def test_undeclared_specialisation_is_refused():
    fam = _kernels.families()[0]
    with pytest.raises(KeyError, match="not a declared specialisation"):
        fam.get("no_such_kernel<float>")


def test_includes_are_inlined():
    src = _kernels.source("boundary_take.cu")
    assert "#include" not in src and "boundary_index" in src


@pytest.mark.parametrize("k", [2, 13])
@pytest.mark.parametrize("mode", sorted(_boundary.MODE_CODES))
def test_boundary_modes_match_numpy_pad(be, mode, k):
    # numpy.pad is the independent reference for every mode's extension rule; k = 2 is a pad
    # of three runs, k = 13 on 5 samples repeats the rule many times
    x = np.arange(1.0, 6.0)
    pm = _boundary.pad_mode(mode)
    kw = {"constant_values": -7.0} if pm == "constant" else {}
    ref = np.pad(x, k, mode=pm, **kw)
    idx = np.arange(-k, x.size + k)
    got = be.boundary_take(be.asarray(x), idx, mode, -7.0)
    np.testing.assert_array_equal(be.to_numpy(got), ref)
    # scattered indices (halos, reversed and repeated runs) read the same padded line
    far = np.pad(x, 40, mode=pm, **kw)
    rng = np.random.default_rng(k)
    for idx in (rng.integers(-40, 45, 17), np.r_[-3:2, 4:-1:-1, 7:9], np.r_[-2:3, -2:3]):
        got = be.boundary_take(be.asarray(np.stack([x, 2 * x])), idx, mode, -7.0)
        np.testing.assert_array_equal(be.to_numpy(got), np.stack([far[idx + 40], np.pad(2 * x, 40, mode=pm, **kw)[idx + 40]]))


def test_wheel_ships_kernels(tmp_path):
    pytest.importorskip("build", reason="building the wheel needs the 'build' package (test extra)")
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (test extra)")
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("gpuimg-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("gpuimg/kernels/")}
    expected = {p.name for p in (root / "kernels").iterdir() if p.suffix in (".cu", ".cuh")}
    assert expected and expected <= shipped
