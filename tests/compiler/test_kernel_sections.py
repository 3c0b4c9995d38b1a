"""A kernel's PTX or SASS is its own section of the unit's listing, found by its whole name."""
from symfuse.compiler.kernel_info import _sections

PTX = (".visible .entry E_4x512_add_relu_1(\n.param .u64 p\n)\n{\n  ret;\n}\n"
       ".visible .entry E_4x512_add_relu(\n.param .u64 p\n)\n{\n  exit;\n}\n")


def test_a_name_that_prefixes_another_finds_its_own_section():
    mine = _sections(PTX, ["E_4x512_add_relu"], ".entry ", "\n}\n")
    assert mine.startswith(".entry E_4x512_add_relu(") and "exit;" in mine and "ret;" not in mine
    other = _sections(PTX, ["E_4x512_add_relu_1"], ".entry ", "\n}\n")
    assert other.startswith(".entry E_4x512_add_relu_1(") and "ret;" in other and "exit;" not in other
