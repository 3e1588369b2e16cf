"""Where a fold model trains: threads per model, CUDA/OpenCL probes and THE placement rule
(`resolve_devices`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Callable

import numpy as np

from obsrv.service_tasks.zoo.families import GPU_CAPABLE


def available_cores() -> int:
    """Threads one task may use: `OBSRV_THREADS` when the local runner shares the machine between
    parallel tasks (each task using every core oversubscribes it badly: a 4-fold hist_gbm fit
    measured 25 s instead of 0.5 s), else every core this process may run on."""
    shared = os.environ.get("OBSRV_THREADS", "").strip()
    if shared.isdigit() and int(shared) > 0:
        return int(shared)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


SMALL_DATA_ROWS = 10_000


def threads_for(family: str, n_rows: int, n_jobs: int | None) -> int:
    """Threads for one model. LightGBM, XGBoost and HistGradientBoosting run faster on ONE thread
    below ~10k rows (thread start-up and OpenMP sync dominate; LightGBM measured 5x faster on 300
    rows, 2 cores; HistGradientBoosting degrades badly when cores are shared), so they get one."""
    if n_jobs is not None:
        return max(1, n_jobs)
    if family in ("lightgbm", "xgboost", "hist_gbm") and n_rows < SMALL_DATA_ROWS:
        return 1
    return available_cores()


def cuda_device_count() -> int:
    """CUDA devices visible through the driver API (`libcuda`); 0 when there is no driver. Cheap
    and torch-free; `nvidia-smi -L` is the fallback when the driver library cannot be loaded by
    name (unusual driver installs)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return _nvidia_smi_count()
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (OSError, AttributeError):  # pragma: no cover - a broken driver library
        return 0


def _nvidia_smi_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def cuda_present() -> bool:
    """A CUDA device is visible."""
    return cuda_device_count() > 0


def opencl_gpu_platform() -> int | None:
    """Index of the first OpenCL platform with a GPU device, or None. lightgbm's `device_type="gpu"`
    is OpenCL: with only a CPU OpenCL driver installed (e.g. pocl, found on CUDA machines) it "works"
    but runs on the CPU, measured 11x slower than its plain CPU mode on an H100 machine."""
    import ctypes

    try:
        cl = ctypes.CDLL("libOpenCL.so.1")  # what lib_lightgbm dlopens
        n = ctypes.c_uint(0)
        cl.clGetPlatformIDs.argtypes = [ctypes.c_uint, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)]
        if cl.clGetPlatformIDs(0, None, ctypes.byref(n)) != 0 or n.value == 0:
            return None
        platforms = (ctypes.c_void_p * n.value)()
        if cl.clGetPlatformIDs(n.value, platforms, None) != 0:
            return None
        cl.clGetDeviceIDs.argtypes = [
            ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint)
        ]
        for i in range(n.value):
            count = ctypes.c_uint(0)
            # CL_DEVICE_TYPE_GPU = 1 << 2
            if cl.clGetDeviceIDs(platforms[i], 1 << 2, 0, None, ctypes.byref(count)) == 0 and count.value > 0:
                return i
    except (OSError, AttributeError):
        return None
    return None


_PROBED: dict[str, Any] = {}  # a plain dict, not functools.cache: fitted models pickle zoo code by value


def lightgbm_gpu_platform() -> int | None:
    """The OpenCL platform lightgbm should train on, or None when this machine/build cannot train
    lightgbm on a GPU: needs an OpenCL GPU device (`opencl_gpu_platform`) and a lightgbm build with
    GPU support (pip wheels may lack it; a tiny fit tells). Probed once per process."""
    if "lightgbm_gpu_platform" in _PROBED:
        return _PROBED["lightgbm_gpu_platform"]
    platform = opencl_gpu_platform()
    if platform is not None:
        try:
            import lightgbm as lgb

            X = np.random.default_rng(0).normal(size=(64, 3))
            lgb.LGBMRegressor(n_estimators=2, device_type="gpu", gpu_platform_id=platform, verbose=-1).fit(
                X, X[:, 0]
            )
        except Exception:  # noqa: BLE001 - any failure means "no usable GPU build"
            platform = None
    _PROBED["lightgbm_gpu_platform"] = platform
    return platform


def lightgbm_gpu_supported() -> bool:
    """Can lightgbm train on a GPU here (see `lightgbm_gpu_platform`)?"""
    return lightgbm_gpu_platform() is not None


def resolve_devices(
    families: list[str] | tuple[str, ...],
    env: Any = None,
    *,
    cuda_count: Callable[[], int] | None = None,
    lightgbm_gpu: Callable[[], bool] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """THE placement rule: the zoo device (`"cuda"`/`"cpu"`) per family, plus one log line per
    decision. Used by the base tasks (`default_device`) and by `boost`.

    * `OBSRV_COMPUTE=cpu` (the local runner placed the task on CPU compute): CPU, even with CUDA.
    * otherwise a visible CUDA device decides (on Databricks the variable is unset, and a device is
      how a task finds out it landed on serverless GPU); `gpu` without a device falls back to CPU.
    * with a device: xgboost `device="cuda"`, catboost `task_type="GPU"`, lightgbm its GPU device
      only when an OpenCL GPU device exists and this build supports it (`lightgbm_gpu_supported`,
      probed once); other families
      have no GPU mode.

    `env` (default `os.environ`) and the two probes are injectable for tests. Nothing is probed when
    no family in `families` can use a GPU.
    """
    env = os.environ if env is None else env
    devices = {f: "cpu" for f in families}
    capable = [f for f in families if f in GPU_CAPABLE]
    if not capable:
        return devices, [f"{f}: no GPU mode; CPU" for f in families]
    placement = str(env.get("OBSRV_COMPUTE", "")).strip().lower()
    if placement == "cpu":
        return devices, ["running on CPU (placed on CPU compute)"]
    n = (cuda_count or cuda_device_count)()
    if n == 0:
        if placement == "gpu":
            return devices, ["OBSRV_COMPUTE=gpu but no CUDA device found; fell back to CPU"]
        return devices, ["no CUDA device found; running on CPU"]
    notes = [f"{n} CUDA device(s) found"]
    for f in families:
        if f == "xgboost":
            devices[f] = "cuda"
            notes.append("xgboost: device=cuda")
        elif f == "catboost":
            devices[f] = "cuda"
            notes.append("catboost: task_type=GPU")
        elif f == "lightgbm":
            if (lightgbm_gpu or lightgbm_gpu_supported)():
                devices[f] = "cuda"
                notes.append("lightgbm: device_type=gpu")
            else:
                notes.append("lightgbm: this build has no GPU support; fell back to CPU")
        else:
            notes.append(f"{f}: no GPU mode; CPU")
    return devices, notes


def default_device(family: str) -> str:
    """The device `resolve_devices` picks for one family."""
    return resolve_devices([family])[0][family]
