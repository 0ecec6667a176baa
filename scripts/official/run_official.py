"""Runs the official Wanda or SparseGPT pruning code, unmodified, on a Llama checkpoint and times it.

    python3 scripts/official/run_official.py --method wanda|sparsegpt --code <checkout> --model <dir>
        --windows <calib.safetensors> [--sparsity 0.5] [--threads 2] --out <pruned.safetensors> --timings <t.json>

--code is a checkout of the official repository, imported from where it lies:
  wanda:     locuslab/wanda      -> lib/prune.py prune_wanda (WrappedGPT from lib/layerwrapper.py)
  sparsegpt: IST-DASLab/sparsegpt -> llama.py llama_sequential (SparseGPT from sparsegpt.py)
--windows holds the calibration token windows, one I32/I64 [nsamples, seqlen] tensor (what
`shears prune --save-calib-tokens` writes), so both tools see the same tokens.

What the harness supplies around their code (nothing in it is edited):
- `transformers` and `datasets` are not installable here (Debian's python3-torch, no pip), so stand-in
  modules are registered: transformers.LlamaForCausalLM / Conv1D from hf_llama.py, and a `datasets` whose
  load_dataset refuses (never reached). Wanda's `get_loaders` (C4 through a HF tokenizer) is replaced in
  lib.prune's namespace by one returning the windows above in its (input, target) form; SparseGPT's
  llama_sequential takes the loader as an argument. `model.seqlen` = window length, `model.hf_device_map` = {}
  (what a single-device accelerate load leaves), device = cpu.
- torch.cuda.synchronize, which sparsegpt.py calls after each layer, raises on a CPU-only PyTorch: made a no-op.
- SparseGPT's `args` global (set by llama.py's __main__) is given its command-line defaults, with
  --sparsity; Wanda's args: nsamples, seed 0, sparsity_ratio, use_variant False (unstructured).
- Timing: the whole prune call (their "statistic + layer loop": calibration capture, every block's
  statistics pass, pruning and re-run), and inside it, by hooks that wrap without changing them, the time in
  decoder-layer forward calls, in the statistics hooks (add_batch) and in SparseGPT's fasterprune.
Their progress prints go to <out>.log.
"""
import argparse
import contextlib
import json
import os
import sys
import time
import types
from argparse import Namespace

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import hf_llama  # noqa: E402
import st_io  # noqa: E402


def install_stand_ins():
    tf = types.ModuleType('transformers')
    tf.LlamaForCausalLM = hf_llama.LlamaForCausalLM
    tf.Conv1D = hf_llama.Conv1D
    sys.modules['transformers'] = tf
    ds = types.ModuleType('datasets')

    def load_dataset(*a, **k):
        raise RuntimeError('datasets stand-in: calibration windows are given by the harness')

    ds.load_dataset = load_dataset
    sys.modules['datasets'] = ds
    torch.cuda.synchronize = lambda *a, **k: None


class Clock:
    """Accumulates seconds spent in wrapped callables."""

    def __init__(self):
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t
                self.calls += 1
        return timed


def time_layer_forwards(model, clock):
    """Forward pre/post hooks on every decoder layer (hooks are kept when Catcher swaps layer 0 out and back)."""
    started = {}

    def pre(mod, _inp):
        started[id(mod)] = time.perf_counter()

    def post(mod, _inp, _out):
        clock.seconds += time.perf_counter() - started.pop(id(mod))
        clock.calls += 1

    for layer in model.model.layers:
        layer.register_forward_pre_hook(pre)
        layer.register_forward_hook(post)


def loaded_blas():
    """The BLAS library this process mapped (Debian's torch links libblas.so.3, whichever provider the
    alternatives system picked: the netlib reference is ~30x slower than OpenBLAS)."""
    with open('/proc/self/maps') as f:
        paths = {line.split()[-1] for line in f if 'blas' in line.lower() and '/' in line}
    return sorted(os.path.realpath(x) for x in paths)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--method', choices=['wanda', 'sparsegpt'], required=True)
    p.add_argument('--code', required=True)
    p.add_argument('--model', required=True)
    p.add_argument('--windows', required=True)
    p.add_argument('--sparsity', type=float, default=0.5)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', required=True)
    p.add_argument('--timings', required=True)
    a = p.parse_args()

    entry = {'wanda': 'lib/prune.py', 'sparsegpt': 'llama.py'}[a.method]
    if not os.path.isfile(os.path.join(a.code, entry)):
        sys.exit(f'run_official.py: {a.code}: no {entry} (give a checkout of the official {a.method} repository)')
    torch.set_num_threads(a.threads)
    install_stand_ins()
    sys.path.insert(0, os.path.abspath(a.code))

    t = time.perf_counter()
    model = hf_llama.LlamaForCausalLM.from_pretrained(a.model)
    load_s = time.perf_counter() - t
    windows = list(st_io.read(a.windows).values())
    if len(windows) != 1 or windows[0].ndim != 2:
        sys.exit(f'run_official.py: {a.windows}: expected one [nsamples, seqlen] token tensor')
    ids = torch.from_numpy(windows[0].astype('int64'))
    nsamples, seqlen = ids.shape
    model.seqlen = seqlen
    model.hf_device_map = {}
    loader = [(ids[j:j + 1], None) for j in range(nsamples)]
    cpu = torch.device('cpu')

    forward, stats, prune = Clock(), Clock(), Clock()
    time_layer_forwards(model, forward)
    log = open(a.out + '.log', 'w')
    with contextlib.redirect_stdout(log):
        if a.method == 'wanda':
            import lib.prune as official
            official.get_loaders = lambda name, nsamples, seed, seqlen, tokenizer: (loader, None)
            official.WrappedGPT.add_batch = stats.wrap(official.WrappedGPT.add_batch)
            args = Namespace(nsamples=nsamples, seed=0, sparsity_ratio=a.sparsity, use_variant=False)
            t = time.perf_counter()
            official.prune_wanda(args, model, None, device=cpu)
            total_s = time.perf_counter() - t
        else:
            import llama as official
            official.SparseGPT.add_batch = stats.wrap(official.SparseGPT.add_batch)
            official.SparseGPT.fasterprune = prune.wrap(official.SparseGPT.fasterprune)
            official.args = Namespace(nsamples=nsamples, sparsity=a.sparsity, prunen=0, prunem=0, percdamp=0.01, blocksize=128,
                                      wbits=16, minlayer=-1, maxlayer=1000, prune_only='', invert=False, true_sequential=False)
            t = time.perf_counter()
            with torch.no_grad():
                official.llama_sequential(model, loader, cpu)
            total_s = time.perf_counter() - t
    log.close()

    weights = {}
    for i, layer in enumerate(model.model.layers):
        for name, m in layer.named_modules():
            if type(m) is nn.Linear:
                weights[f'model.layers.{i}.{name}.weight'] = m.weight.detach().numpy()
    st_io.write_f32(a.out, weights)
    timings = {
        'method': a.method, 'nsamples': nsamples, 'seqlen': seqlen, 'sparsity': a.sparsity,
        'torch': torch.__version__, 'threads': torch.get_num_threads(), 'interop_threads': torch.get_num_interop_threads(),
        'OPENBLAS_CORETYPE': os.environ.get('OPENBLAS_CORETYPE'), 'OPENBLAS_NUM_THREADS': os.environ.get('OPENBLAS_NUM_THREADS'),
        'blas': loaded_blas(),
        'load_s': load_s, 'total_s': total_s,
        'forward_s': forward.seconds, 'forward_calls': forward.calls,
        'statistics_s': stats.seconds, 'statistics_calls': stats.calls,
        'fasterprune_s': prune.seconds if a.method == 'sparsegpt' else None,
    }
    with open(a.timings, 'w') as f:
        json.dump(timings, f, indent=2)
    print(json.dumps(timings))


if __name__ == '__main__':
    main()
