"""NVRTC: real compiles (no GPU needed) for sm_80 and sm_90, ptxas resource
parsing from real and hand-written logs, the disk cache (hits make no NVRTC
call, corrupt entries recompile), and the errors users see."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("cuda.bindings")

from symfuse.compiler.report import CompileReport  # noqa: E402
from symfuse.errors import CompileError  # noqa: E402
from symfuse.runtime import nvrtc  # noqa: E402
from symfuse.runtime.cache import DiskCache  # noqa: E402

KERNELS = r"""
extern "C" __global__ void add_f32(const float* a, const float* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

// block sum: warp shuffles, then one partial per warp through shared memory
__global__ void block_sum(const float* x, float* out, int n) {
  __shared__ float partial[32];
  float v = 0.f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += x[i];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
  }
}

template <typename T, int N>
__global__ void axpy(T* y, const T* x, T a, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] * T(N) + y[i];
}
template __global__ void axpy<float, 2>(float*, const float*, float, int);
"""
NAMES = {"add_f32", "_Z9block_sumPKfPfi", "_Z4axpyIfLi2EEvPT_PKS0_S0_i"}

# 48 values live at once: fits in ~56 registers, spills under a 24-register cap
HEAVY = r"""
extern "C" __global__ void heavy(const float* x, float* y) {
  float v[48];
  #pragma unroll
  for (int i = 0; i < 48; ++i) v[i] = x[threadIdx.x + i * 1024];
  float acc = 0.f;
  #pragma unroll
  for (int i = 0; i < 48; ++i) acc += v[i] * v[47 - i] + v[(i * 7) % 48];
  #pragma unroll
  for (int i = 0; i < 48; ++i) y[threadIdx.x + i * 1024] = v[i] * acc;
}
"""
SMALL = r'extern "C" __global__ void twice(float* x) { x[threadIdx.x] *= 2.f; }'


@pytest.fixture
def cache(tmp_path):
    return DiskCache(str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    c = DiskCache(str(tmp_path_factory.mktemp("nvrtc") / "cache"))
    return {arch: nvrtc.compile_cuda(KERNELS, "kernels", arch=arch, cache=c) for arch in ("sm_80", "sm_90")}


def _entries(cache):
    d = os.path.join(cache.root, nvrtc.NAMESPACE)
    return [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]


def test_version_and_archs():
    assert nvrtc.nvrtc_version() >= (12, 0)
    archs = nvrtc.supported_archs()
    assert "sm_80" in archs and "sm_90" in archs and all(a.startswith("sm_") for a in archs)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cubin_and_resources(compiled, arch):
    r = compiled[arch]
    assert r.cubin[:4] == b"\x7fELF" and r.ptx is None and r.arch == arch and not r.cache_hit
    assert r.image == r.cubin
    assert f"for '{arch}'" in r.log
    assert set(r.resources) == NAMES                 # plain, mangled and template-instance names
    for k, res in r.resources.items():
        assert res.registers > 0, k
        assert (res.spill_stores, res.spill_loads, res.stack_bytes) == (0, 0, 0) and not res.spills
    red = r.resources["_Z9block_sumPKfPfi"]
    assert red.shared_bytes == 32 * 4 and red.barriers >= 1
    assert r.resources["add_f32"].shared_bytes == 0
    if arch == "sm_80":      # ptxas 13 reports cmem[0] (the parameters) for sm_80 but not for sm_90
        assert r.resources["add_f32"].cmem.get(0, 0) > 0
        assert r.resources["add_f32"].const_bytes == sum(r.resources["add_f32"].cmem.values())


def test_forced_spills_are_parsed(cache):
    r = nvrtc.compile_cuda(HEAVY, "heavy", arch="sm_80", options=["--maxrregcount=24"], cache=cache)
    h = r.resources["heavy"]
    assert h.registers <= 24 and h.spill_stores > 0 and h.spill_loads > 0 and h.stack_bytes > 0 and h.spills
    assert h.other.get("cumulative stack size", 0) > 0


def test_ptx_output(cache):
    r = nvrtc.compile_cuda(KERNELS, "kernels", arch="sm_90", output="ptx", cache=cache)
    assert r.cubin is None and r.arch == "compute_90" and r.resources == {}
    assert ".entry add_f32" in r.ptx and ".target sm_90" in r.ptx
    assert r.image.endswith(b"\0")
    calls = nvrtc.NVRTC_CALLS
    assert nvrtc.ptx_for(KERNELS, "kernels", arch="sm_90", cache=cache) == r.ptx   # same compile: cached
    assert nvrtc.NVRTC_CALLS == calls


def test_cache_hit_makes_no_nvrtc_call(cache):
    first = nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=cache)
    calls = nvrtc.NVRTC_CALLS
    for c in (cache, DiskCache(cache.root)):         # same instance, and another process's view
        hit = nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=c)
        assert hit.cache_hit and hit.cubin == first.cubin and hit.log == first.log
        assert hit.resources == first.resources and hit.resources["twice"].registers > 0
    assert nvrtc.NVRTC_CALLS == calls
    # anything in the key misses: options, arch, output
    nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", options=["-lineinfo"], cache=cache)
    nvrtc.compile_cuda(SMALL, "twice", arch="sm_80", cache=cache)
    assert nvrtc.NVRTC_CALLS == calls + 2


def test_default_cache_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMFUSE_CACHE_DIR", str(tmp_path / "env"))
    nvrtc.compile_cuda(SMALL, "twice", arch="sm_90")
    assert _entries(DiskCache(str(tmp_path / "env")))
    assert nvrtc.compile_cuda(SMALL, "twice", arch="sm_90").cache_hit


def test_corrupt_entry_recompiles(cache):
    first = nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=cache)
    (entry,) = _entries(cache)
    blob = bytearray(open(entry, "rb").read())
    blob[-10] ^= 0xFF                                # a flipped bit in the cubin
    open(entry, "wb").write(bytes(blob))
    calls = nvrtc.NVRTC_CALLS
    again = nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=cache)
    assert not again.cache_hit and nvrtc.NVRTC_CALLS == calls + 1 and cache.stats.corrupt == 1
    assert again.cubin == first.cubin                # and the entry is rewritten
    assert nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=cache).cache_hit


def test_syntax_error(cache):
    src = "__global__ void broken(float* x) { x[0] = ; }\n"
    with pytest.raises(CompileError) as ei:
        nvrtc.compile_cuda(src, "my_kernel", cache=cache)
    msg = str(ei.value)
    assert "my_kernel" in msg and "expected an expression" in msg and "NVRTC_ERROR_COMPILATION" in msg
    path = msg.split("source saved at ")[1].split()[0]
    assert path.startswith(cache.root) and open(path).read() == src
    # without a cache the source goes to a temporary file
    with pytest.raises(CompileError, match="source saved at") as ei:
        nvrtc.compile_cuda(src, "my_kernel", cache=False)
    path = str(ei.value).split("source saved at ")[1].split()[0]
    assert os.path.exists(path)
    os.remove(path)


def test_bad_arch_and_arguments(cache):
    with pytest.raises(CompileError) as ei:
        nvrtc.compile_cuda(SMALL, "twice", arch="sm_10", cache=cache)
    assert "sm_10" in str(ei.value) and "sm_80" in str(ei.value) and "sm_90" in str(ei.value)
    for arch in ("sm90", "ampere", "sm_90x"):
        with pytest.raises(CompileError, match="unsupported CUDA arch"):
            nvrtc.compile_cuda(SMALL, "twice", arch=arch, cache=cache)
    with pytest.raises(CompileError, match="real architecture"):
        nvrtc.compile_cuda(SMALL, "twice", arch="compute_90", cache=cache)
    with pytest.raises(CompileError, match="'cubin' or 'ptx'"):
        nvrtc.compile_cuda(SMALL, "twice", output="fatbin", cache=cache)
    with pytest.raises(CompileError, match="arch="):
        nvrtc.compile_cuda(SMALL, "twice", options=["-arch=sm_80"], cache=cache)
    with pytest.raises(CompileError, match="unrecognized option"):
        nvrtc.compile_cuda(SMALL, "twice", options=["--no-such-flag"], cache=cache)


def test_headers_and_include_dirs(cache, tmp_path):
    src = '#include "scale.cuh"\n#include "bias.cuh"\n' \
          'extern "C" __global__ void k(float* x) { x[threadIdx.x] = x[threadIdx.x] * SCALE + BIAS; }'
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "bias.cuh").write_text("#define BIAS 1.f\n")
    kw = dict(arch="sm_90", include_dirs=[str(inc)], cache=cache, output="ptx")
    a = nvrtc.compile_cuda(src, "k", headers={"scale.cuh": "#define SCALE 3.f\n"}, **kw)
    assert "0f40400000" in a.ptx and "0f3F800000" in a.ptx            # 3.0f and 1.0f
    b = nvrtc.compile_cuda(src, "k", headers={"scale.cuh": "#define SCALE 5.f\n"}, **kw)
    assert not b.cache_hit and "0f40A00000" in b.ptx
    (inc / "bias.cuh").write_text("#define BIAS 2.5f\n")              # an edited header file misses too
    c = nvrtc.compile_cuda(src, "k", headers={"scale.cuh": "#define SCALE 5.f\n"}, **kw)
    assert not c.cache_hit and "0f40200000" in c.ptx


def test_compile_many(cache):
    progs = [(SMALL.replace("twice", f"k{i}").replace("2.f", f"{i}.5f"), f"k{i}") for i in range(4)]
    par = nvrtc.compile_many(progs, arch="sm_90", cache=cache, parallel=True)
    assert [r.name for r in par] == [p[1] for p in progs] and all(not r.cache_hit for r in par)
    assert [set(r.resources) for r in par] == [{f"k{i}"} for i in range(4)]
    seq = nvrtc.compile_many(progs, arch="sm_90", cache=cache, parallel=False)
    assert all(r.cache_hit for r in seq) and [r.cubin for r in seq] == [r.cubin for r in par]
    with pytest.raises(CompileError, match="unsupported CUDA arch"):
        nvrtc.compile_many(progs, arch="sm_10", cache=cache)


def test_report_stage(cache):
    rep = CompileReport("f")
    nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=cache, report=rep)
    nvrtc.compile_cuda(SMALL, "twice", arch="sm_90", cache=cache, report=rep)
    notes = [s.note for s in rep.stages if s.name == "nvrtc twice"]
    assert notes[0].startswith("cache miss; twice: ") and notes[1].startswith("cache hit")
    assert rep.info["nvrtc_calls"] == nvrtc.NVRTC_CALLS


def test_sass(compiled):
    if nvrtc._find_nvdisasm() is None:
        with pytest.raises(CompileError, match="pip install nvidia-cuda-nvdisasm"):
            nvrtc.sass(compiled["sm_90"].cubin)
        pytest.skip("nvdisasm not installed")
    text = nvrtc.sass(compiled["sm_90"].cubin)
    assert ".text.add_f32" in text and "SHFL.DOWN" in text and "BAR.SYNC" in text and "EXIT" in text
    with pytest.raises(CompileError, match="nvdisasm failed"):
        nvrtc.sass(b"not an elf")


def test_import_symfuse_does_not_load_nvrtc():
    code = "import sys, symfuse, symfuse.runtime.nvrtc; assert 'cuda.bindings' not in sys.modules, 'eager'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


# ----------------------------------------------------------- hand-written logs

NVCC_LOG = """\
ptxas info    : 16 bytes gmem, 256 bytes cmem[3]
ptxas info    : Function properties for _Z6helperPf
    24 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_70'
ptxas info    : Function properties for _Z3fooPf
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 8 registers, 1024 bytes smem, 352 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Function properties for bar
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function 'bar' for 'sm_70'
ptxas info    : Used 4 registers, 40 bytes lmem, 328 bytes cmem[0]
"""


def test_parse_handwritten_log():
    res = nvrtc.parse_ptxas_log(NVCC_LOG)
    assert set(res) == {"_Z3fooPf", "bar"}           # the device function is not a kernel
    foo, bar = res["_Z3fooPf"], res["bar"]
    assert (foo.registers, foo.shared_bytes, foo.cmem, foo.const_bytes) == (8, 1024, {0: 352, 2: 8}, 360)
    assert (foo.stack_bytes, foo.spill_stores, foo.spill_loads, foo.spills) == (8, 4, 12, True)
    # properties before the entry line, lmem, no barriers item
    assert (bar.registers, bar.local_bytes, bar.cmem, bar.barriers, bar.spills) == (4, 40, {0: 328}, 0, False)


def test_parse_nvrtc_log_with_callee_after_entry():
    log = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z4kernPfi' for 'sm_80'
ptxas info    : Function properties for _Z4kernPfi
ptxas         .     32 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 1 barriers, 32 bytes cumulative stack size, 364 bytes cmem[0]
ptxas info    : Compile time = 3.507 ms
ptxas info    : Function properties for _Z6helperPfi
ptxas         .     96 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
"""
    (k,) = nvrtc.parse_ptxas_log(log).values()
    assert (k.registers, k.barriers, k.stack_bytes, k.spills) == (30, 1, 32, False)
    assert k.other == {"cumulative stack size": 32} and k.cmem == {0: 364}
    assert nvrtc.parse_ptxas_log("") == {}
    assert nvrtc.parse_ptxas_log("ptxas info    : Used 5 registers\n") == {}    # no owner: ignored
