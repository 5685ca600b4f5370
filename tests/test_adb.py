"""edgediff.adb on recorded text: `adb devices -l`, executor_runner logs, and a fake adb standing in for a phone."""

import os
import stat
import sys

import numpy as np
import pytest

from edgediff.measure import adb

DEVICES = """\
* daemon not running; starting now at tcp:5037
* daemon started successfully
List of devices attached
R58N12ABCDE            device usb:1-1 product:a52qnsxx model:SM_A525F device:a52q transport_id:1
emulator-5554          offline transport_id:2
0123456789ABCDEF       unauthorized usb:1-2 transport_id:3
ZY22BADC0DE            no permissions (user in plugdev group; are your udev rules wrong?); see \
[http://developer.android.com/tools/device.html] usb:1-3 transport_id:4

"""

# executor_runner (ExecuTorch 1.x, posix PAL: ET_LOG on stderr) with --num_executions 5
POSIX_LOG = """\
I 00:00:00.000210 executorch:executor_runner.cpp:218] Resetting threadpool with num threads = 4
I 00:00:00.000512 executorch:executor_runner.cpp:352] Model file model.pte is loaded.
I 00:00:00.000530 executorch:executor_runner.cpp:362] Using method forward
I 00:00:00.000535 executorch:executor_runner.cpp:419] Setting up CPU planned buffer 0, size 412160.
I 00:00:00.009854 executorch:executor_runner.cpp:489] Model loaded in 9.318000 ms.
I 00:00:00.014232 executorch:executor_runner.cpp:650] Iteration 1 of 5: 4.366000 ms
I 00:00:00.017561 executorch:executor_runner.cpp:650] Iteration 2 of 5: 3.318000 ms
I 00:00:00.020812 executorch:executor_runner.cpp:650] Iteration 3 of 5: 3.242000 ms
I 00:00:00.024101 executorch:executor_runner.cpp:650] Iteration 4 of 5: 3.280000 ms
I 00:00:00.027360 executorch:executor_runner.cpp:650] Iteration 5 of 5: 3.250000 ms
I 00:00:00.027380 executorch:executor_runner.cpp:663] Model executed successfully 5 time(s) in 17.456000 ms.
I 00:00:00.027385 executorch:executor_runner.cpp:666] 1 outputs:
OutputX 0: tensor(sizes=[1, 1, 32, 32], [0.0312, -0.118, ..., 0.204])
"""

# an older runner (ExecuTorch 0.4): only the total line
OLD_LOG = """\
I 00:00:00.000412 executorch:executor_runner.cpp:82] Model file model.pte is loaded.
I 00:00:00.052311 executorch:executor_runner.cpp:171] Model executed successfully 10 time(s) in 48.200000 ms.
"""

# the same runner built with the android PAL: ET_LOG goes to logcat, tag ExecuTorch
LOGCAT = """\
--------- beginning of main
11-26 10:15:02.101  4321  4321 I ExecuTorch: Model loaded in 7.500000 ms.
11-26 10:15:02.140  4321  4321 I ExecuTorch: Iteration 1 of 2: 5.100000 ms
11-26 10:15:02.145  4321  4321 I ExecuTorch: Iteration 2 of 2: 4.900000 ms
11-26 10:15:02.146  4321  4321 I ExecuTorch: Model executed successfully 2 time(s) in 10.000000 ms.
"""

FAILED_LOG = """\
I 00:00:00.000512 executorch:executor_runner.cpp:352] Model file model.pte is loaded.
E 00:00:00.001020 executorch:method.cpp:771] Missing operator: [0] aten::native_group_norm.out
F 00:00:00.001100 executorch:executor_runner.cpp:480] In function main(), assert failed (method.ok()): \
Loading of method forward failed with status 0x14
"""


def test_parse_devices_states_and_details():
    devs = adb.parse_devices(DEVICES)
    assert [(d.serial, d.state) for d in devs] == [("R58N12ABCDE", "device"), ("emulator-5554", "offline"),
                                                   ("0123456789ABCDEF", "unauthorized"),
                                                   ("ZY22BADC0DE", "no permissions")]
    assert devs[0].ready and not any(d.ready for d in devs[1:])
    assert devs[0].details["model"] == "SM_A525F" and devs[0].describe() == "R58N12ABCDE (SM A525F)"
    assert adb.parse_devices("R58N12ABCDE\tdevice\n") == [adb.Device("R58N12ABCDE", "device", {})]
    assert adb.parse_devices("List of devices attached\n\n") == []


def test_pick_device_explains_why_none_is_usable():
    devs = adb.parse_devices(DEVICES)
    assert adb.pick_device(devs).serial == "R58N12ABCDE"
    with pytest.raises(adb.AdbError, match="no Android device listed by `adb devices`"):
        adb.pick_device([])
    with pytest.raises(adb.AdbError, match="0123456789ABCDEF is unauthorized: accept the USB debugging prompt"):
        adb.pick_device(devs[1:])
    with pytest.raises(adb.AdbError, match="emulator-5554 is offline"):
        adb.pick_device(devs, serial="emulator-5554")
    with pytest.raises(adb.AdbError, match="no device 'nope' listed"):
        adb.pick_device(devs, serial="nope")


def test_parse_runner_output_posix_old_logcat_and_failure():
    t = adb.parse_runner_output(POSIX_LOG)
    assert (t.count, t.total_ms, t.load_ms) == (5, 17.456, 9.318) and len(t.iterations) == 5
    assert t.latency(warmup=2).samples == (3.242, 3.28, 3.25)
    old = adb.parse_runner_output(OLD_LOG)
    assert old.iterations == () and old.load_ms is None and old.latency(warmup=3).samples == (4.82,)
    cat = adb.parse_runner_output(LOGCAT)
    assert cat.iterations == (5.1, 4.9) and cat.load_ms == 7.5 and cat.latency(warmup=5).p50 == 5.0
    with pytest.raises(adb.AdbError, match="Loading of method forward failed with status 0x14"):
        adb.parse_runner_output(FAILED_LOG)
    with pytest.raises(adb.AdbError, match="did not report a successful run: Segmentation fault"):
        adb.parse_runner_output("Segmentation fault\n")


def test_missing_adb_and_runner_name_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(adb.ADB_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(adb.AdbError, match="adb not found"):
        adb.devices()
    monkeypatch.delenv(adb.RUNNER_ENV, raising=False)
    with pytest.raises(adb.AdbError, match="--executor-runner PATH or set \\$EDGEDIFF_EXECUTOR_RUNNER"):
        adb.find_runner()
    with pytest.raises(adb.AdbError, match="does not exist"):
        adb.find_runner(tmp_path / "executor_runner")
    (tmp_path / "executor_runner").write_bytes(b"ELF")
    monkeypatch.setenv(adb.RUNNER_ENV, str(tmp_path / "executor_runner"))
    assert adb.find_runner() == tmp_path / "executor_runner"


FAKE_ADB = """\
#!{python}
# A stand-in for adb: a folder plays the phone; executor_runner echoes input 0 as output 0.
import os, shutil, sys
phone, args = os.environ["FAKE_PHONE"], sys.argv[1:]
open(os.environ["FAKE_LOG"], "a").write(" ".join(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
local = lambda remote: os.path.join(phone, remote.lstrip("/"))
if args[0] == "devices":
    print("List of devices attached\\nFAKE123 device model:Pixel_8 transport_id:1")
elif args[0] == "push":
    os.makedirs(os.path.dirname(local(args[2])), exist_ok=True)
    shutil.copy(args[1], local(args[2]))
elif args[0] == "pull":
    shutil.copy(local(args[1]), args[2])
elif args[0] == "shell" and "executor_runner " in args[1]:
    cmd = args[1]
    if os.environ.get("FAKE_OLD") and "--inputs" in cmd:
        sys.exit("ERROR: unknown command line flag 'inputs'")
    if "--inputs" in cmd:
        d = local("/data/local/tmp/edgediff")
        shutil.copy(os.path.join(d, "input0.bin"), os.path.join(d, "out-0.bin"))
    sys.stderr.write(open(os.environ["FAKE_OUTPUT"]).read())
"""


@pytest.fixture
def fake_adb(tmp_path, monkeypatch):
    exe = tmp_path / "adb"
    exe.write_text(FAKE_ADB.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "out.txt").write_text(POSIX_LOG)
    for k, v in {"FAKE_PHONE": tmp_path / "phone", "FAKE_LOG": tmp_path / "adb.log",
                 "FAKE_OUTPUT": tmp_path / "out.txt", adb.ADB_ENV: exe}.items():
        monkeypatch.setenv(k, str(v))
    (tmp_path / "model.pte").write_bytes(b"PTE")
    (tmp_path / "executor_runner").write_bytes(b"ELF")
    return tmp_path


def test_run_pte_pushes_runs_parses_and_pulls(fake_adb):
    dev = adb.pick_device(adb.devices())
    assert dev.describe() == "FAKE123 (Pixel 8)"
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    run = adb.run_pte(fake_adb / "model.pte", fake_adb / "executor_runner", device=dev, iters=3, warmup=2,
                      threads=4, inputs=[x, np.zeros(1, np.float32)])
    assert run.timing.count == 5 and run.latency.samples == (3.242, 3.28, 3.25)
    np.testing.assert_array_equal(run.output, x.ravel())
    log = (fake_adb / "adb.log").read_text()
    assert "-s FAKE123 push" in log and "chmod 755 /data/local/tmp/edgediff/executor_runner" in log
    assert "--num_executions 5 --cpu_threads 4 --inputs input0.bin,input1.bin --output_file out" in log
    assert os.path.isfile(fake_adb / "phone/data/local/tmp/edgediff/model.pte")


def test_run_pte_falls_back_for_a_runner_without_inputs_flag(fake_adb, monkeypatch):
    monkeypatch.setenv("FAKE_OLD", "1")
    (fake_adb / "out.txt").write_text(OLD_LOG)
    dev = adb.Device("FAKE123", "device", {})
    run = adb.run_pte(fake_adb / "model.pte", fake_adb / "executor_runner", device=dev,
                      inputs=[np.zeros(4, np.float32)])
    assert run.output is None and run.latency.samples == (4.82,)
    runs = [ln for ln in (fake_adb / "adb.log").read_text().splitlines() if "./executor_runner" in ln]
    assert len(runs) == 2 and "--inputs" in runs[0] and "--inputs" not in runs[1]


GETPROP = """\
[ro.build.version.release]: [14]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.manufacturer]: [samsung]
[ro.product.model]: [SM-S921B]
[ro.soc.model]: [SM8650]
[ro.boot.serialno]: [R58N12ABCDE]
[persist.sys.locale]: []
"""


def test_parse_getprop_keeps_the_phone_facts():
    assert adb.parse_getprop(GETPROP) == {"maker": "samsung", "model": "SM-S921B", "soc": "SM8650",
                                          "android": "14", "abi": "arm64-v8a"}
    assert adb.parse_getprop("error: closed\n") == {}
