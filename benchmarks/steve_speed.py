"""Updates per second of SAC/TD3 with the TD(0) target against STEVE/MVE (default and paper world-model
sizes) on Hopper-v5 shapes, one thread: ``OMP_NUM_THREADS=1 python benchmarks/steve_speed.py``."""
import time

import torch

from rlblocks.registry import RunOptions, build_agent, get_algo

torch.set_num_threads(1)
def bench(algo, n=150, **ov):
    spec = get_algo(algo); cfg = spec.config_cls(buffer_size=5000, **ov); cfg.check()
    agent = build_agent(spec, "Hopper-v5", cfg, 0, torch.device("cpu"), RunOptions(progress=False, tensorboard=False))
    buf = agent.replay.buffer
    for _ in range(2000):
        buf.add(torch.randn(1, 11), torch.rand(1, 3)*2-1, torch.randn(1), torch.randn(1, 11), torch.zeros(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool))
    wm = agent.modules.get("world_model")
    def one():
        if wm is not None:
            for _ in range(cfg.wm_updates_per_step): wm.train_step()
        agent.algo.update(agent.replay.sample(cfg.batch_size))
    for _ in range(10): one()
    t = time.perf_counter()
    for _ in range(n): one()
    dt = (time.perf_counter() - t) / n
    # split: target only / wm step only
    if wm is not None:
        t = time.perf_counter()
        for _ in range(n): wm.train_step()
        dwm = (time.perf_counter() - t) / n
        b = agent.replay.sample(cfg.batch_size)
        t = time.perf_counter()
        with torch.no_grad():
            for _ in range(n): agent.target(b)
        dtg = (time.perf_counter() - t) / n
    else:
        dwm = dtg = 0.0
    return dt, dwm, dtg
paper = {"wm_dynamics_hidden": [512]*8, "wm_reward_hidden": [128]*4, "wm_batch_size": 512}
for name, algo, ov in [("sac td", "sac", {}), ("sac steve (defaults)", "sac", {"target": "steve"}),
                       ("sac mve (defaults)", "sac", {"target": "mve"}),
                       ("sac steve (paper wm sizes)", "sac", dict(target="steve", **paper)),
                       ("td3 td", "td3", {}), ("td3 steve (defaults)", "td3", {"target": "steve"})]:
    dt, dwm, dtg = bench(algo, n=60 if "paper" in name else 150, **ov)
    print(f"{name:28s} {1/dt:7.1f} updates/s  ({dt*1e3:6.1f} ms; world-model step {dwm*1e3:5.1f} ms, target {dtg*1e3:5.1f} ms)", flush=True)
