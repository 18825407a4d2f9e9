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


def test_asv_results_and_comparisons_share_one_machine_key():
    """asv's result files name the machine by what asv was told: make bench tells it the id; an
    older run's host name ('vm') gives the id of the hardware asv recorded (a legacy id, as the
    comparisons of that time have), never the host name, which machines of different hardware share."""
    asv_machine_id, identify = machine.asv_machine_id, machine.identify
    here = identify()
    params = {"cpu": here["cpu"], "num_cpu": str(here["cores"]), "ram": str(here["memory_bytes"])}
    assert asv_machine_id(dict(params, machine=here["id"])) == here["id"]
    legacy = asv_machine_id(dict(params, machine="vm"))
    assert legacy != here["id"] and legacy == machine.machine_id({"cpu": here["cpu"], "cores": here["cores"],
                                                           "memory_bytes": here["memory_bytes"]})
    assert asv_machine_id(dict(params, machine="vm", num_cpu="64")) != legacy
    assert machine.asv_legacy(dict(params, machine="vm")) and not machine.asv_legacy(dict(params, machine=here["id"]))
    assert asv_machine_id({"machine": "some host"}) == "some-host"
