"""Matrix files for `fewops lcc` and `fewops export --matrix`: checked before any data is read."""

import re

import numpy as np
import pytest

from fewops.cli.main import main
from fewops.codes.lcc import decompose
from fewops.io.matrix import load_matrix


def _npy_with_header(path, shape, dtype="<f8", data=b""):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(data)
    return path


def test_a_real_matrix_loads_as_float64(tmp_path):
    np.save(tmp_path / "w.npy", np.arange(6, dtype=np.int16).reshape(2, 3))
    w = load_matrix(tmp_path / "w.npy")
    assert w.dtype == np.float64 and w.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: np.save(p, np.array([[1, "a"]], dtype=object), allow_pickle=True),
            "Matrix file {p} holds Python objects (dtype object); fewops reads only numeric "
            "arrays and never unpickles.",
        ),
        (
            lambda p: np.save(p, np.ones((2, 2), dtype=np.complex128)),
            "Matrix file {p} holds complex128 values; a weight matrix must be real (integer or "
            "floating point).",
        ),
        (
            lambda p: _npy_with_header(p, (1 << 20, 1 << 20)),
            "Matrix file {p} declares 1,099,511,627,776 entries (shape (1048576, 1048576)); the "
            "limit is 67,108,864 (raise it with max_entries).",
        ),
        (
            lambda p: _npy_with_header(p, (4, 4), data=b"\0" * 16),
            "Matrix file {p} declares shape (4, 4) of float64 but holds only 16 bytes of data; "
            "it is truncated.",
        ),
    ],
)
def test_bad_matrix_files_are_refused_naming_the_file(tmp_path, make, message):
    path = tmp_path / "w.npy"
    make(path)
    with pytest.raises(ValueError, match=f"^{re.escape(message.format(p=path))}$"):
        load_matrix(path)


def test_a_text_file_is_not_a_matrix(tmp_path):
    path = tmp_path / "w.npy"
    path.write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match=f"^{re.escape(f'Matrix file {path} is not a .npy')}"):
        load_matrix(path)


def test_the_lcc_command_names_the_file_of_a_complex_matrix(tmp_path, capsys):
    path = tmp_path / "w.npy"
    np.save(path, np.ones((4, 4), dtype=np.complex64))
    assert main(["lcc", str(path), "--target-db", "30"]) == 2
    assert f"Matrix file {path} holds complex64 values" in capsys.readouterr().err


def test_codes_refuse_complex_weights_instead_of_dropping_the_imaginary_part():
    w = np.ones((4, 4), dtype=np.complex128)
    message = "W must be a real matrix; got complex values (dtype complex128)."
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        decompose(w, 30.0)
