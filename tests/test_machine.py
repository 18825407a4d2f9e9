"""A machine's identity is its hardware: two CPU generations behind one model name never share an
id (bnbench.timing.machine)."""
from bnbench.timing import machine

PROCESSOR = """processor\t: {}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 sse4_2 avx avx2 fma
"""
ZEN3 = PROCESSOR.format(0) + "\n" + PROCESSOR.format(1)     # two processors: the first one's facts are read
ZEN5 = ZEN3.replace("cpu family\t: 25", "cpu family\t: 26").replace("model\t\t: 1", "model\t\t: 2").replace(
    "avx2 fma", "avx2 fma avx512f avx512bw")
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes sha1 sve sve2
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd4f
CPU revision\t: 1
"""


def info(cpuinfo):
    return {"cpu": "AMD EPYC", "cpu_facts": machine.cpu_facts(cpuinfo), "cores": 2, "memory_bytes": 24 * 2 ** 30,
            "gpus": []}


def test_one_model_name_two_generations_two_ids():
    assert machine.cpu_facts(ZEN3) == {"vendor": "AuthenticAMD", "family": "25", "model": "1", "stepping": "1",
                                       "vector": "avx2"}
    assert machine.cpu_facts(ZEN5)["vector"] == "avx512f"
    assert machine.machine_id(info(ZEN3)) == "amd-epyc-f25m1s1-avx2-2c-24g"
    assert machine.machine_id(info(ZEN5)) == "amd-epyc-f26m2s1-avx512f-2c-24g"
    # the same family and model with another vector extension (a VM that hides AVX-512) differs too
    hidden = ZEN5.replace(" avx512f avx512bw", "")
    assert machine.machine_id(info(hidden)) not in (machine.machine_id(info(ZEN5)), machine.machine_id(info(ZEN3)))


def test_arm_cpus_are_told_by_implementer_part_and_their_widest_extension():
    facts = machine.cpu_facts(GRAVITON)
    assert facts == {"implementer": "0x41", "part": "0xd4f", "variant": "0x0", "revision": "1", "vector": "sve2"}
    assert machine.machine_id(dict(info(GRAVITON), cpu="")) == "i0x41p0xd4fv0x0r1-sve2-2c-24g"


def test_an_id_from_before_cpu_facts_is_told_as_such():
    old = {"cpu": "AMD EPYC", "cores": 2, "memory_bytes": 24 * 2 ** 30, "gpus": []}
    assert machine.machine_id(old) == "amd-epyc-2c-24g" and machine.legacy(old)
    assert machine.LEGACY_NOTE in machine.describe(old)
    assert not machine.legacy(machine.identify()) and machine.identify()["id"] != "amd-epyc-2c-24g"
