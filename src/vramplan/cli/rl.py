"""``vramplan rl MODEL --algo grpo``: memory of a post-training job with several models."""

from __future__ import annotations

import click

from vramplan.cli.common import TOKENS, console, emit_json, json_option, table, units_option


@click.command("rl")
@click.argument("model")
@click.option("--algo", default="grpo", show_default=True, help="grpo, ppo, dpo, rloo or online-dpo.")
@click.option("--gpu", required=True, help="GPU name (vramplan gpus).")
@click.option("--gpus", type=int, default=8, show_default=True, help="GPUs in the job.")
@click.option("--gpus-per-node", type=int, default=8, show_default=True, help="GPUs per node (host RAM is per node).")
@click.option("--placement", default="colocated", show_default=True,
              help="colocated (every role on every GPU) or split (engine GPUs + trainer GPUs).")
@click.option("--rollout-gpus", type=int, default=None, help="Split: GPUs running the engine [default: half].")
@click.option("--sharding", default="fsdp", show_default=True,
              help="Trainer sharding: fsdp, zero2, zero3, zero3-offload or none.")
@click.option("--method", default="full", show_default=True, help="Policy: full, lora or qlora.")
@click.option("--precision", default="bf16-mixed", show_default=True, help="Policy precision recipe.")
@click.option("--optimizer", default="adamw", show_default=True, help="Policy optimizer.")
@click.option("--micro-batch", type=int, default=1, show_default=True, help="Policy micro-batch per GPU (sequences).")
@click.option("--recompute", default="full", show_default=True, help="none, selective or full (TRL/verl: full).")
@click.option("--lora-rank", type=int, default=16, show_default=True, help="LoRA rank r.")
@click.option("--fused-ce", is_flag=True, help="Fused linear cross entropy in the policy's loss.")
@click.option("--offload-params", is_flag=True, help="Policy parameters to CPU while the engine generates.")
@click.option("--offload-optimizer", is_flag=True, help="Policy optimizer states to CPU while the engine generates.")
@click.option("--kl-coef", type=float, default=None, help="KL weight; 0 drops the reference [default: the algo's].")
@click.option("--reference-model", default=None, help="Reference model [default: MODEL].")
@click.option("--offload-reference", is_flag=True, help="Reference weights in CPU between its forwards.")
@click.option("--reward-model", "reward_models", multiple=True, help="Reward model (repeatable) [PPO: MODEL].")
@click.option("--no-reward-model", is_flag=True, help="Rule-based rewards only (no reward model).")
@click.option("--offload-reward", is_flag=True, help="Reward weights in CPU between their forwards.")
@click.option("--critic-model", default=None, help="PPO critic [default: MODEL].")
@click.option("--rollout-tp", type=int, default=1, show_default=True, help="Tensor parallel size of one engine.")
@click.option("--gpu-memory-utilization", type=float, default=0.5, show_default=True,
              help="vLLM's share of each engine GPU.")
@click.option("--max-model-len", type=TOKENS, default=None, help="vLLM max_model_len [default: prompt + completion].")
@click.option("--max-num-seqs", type=int, default=None, help="vLLM max_num_seqs [default: vLLM's].")
@click.option("--max-num-batched-tokens", type=int, default=None,
              help="vLLM max_num_batched_tokens [default: vLLM's; TRL colocate: 4096].")
@click.option("--sleep-level", type=int, default=1, show_default=True,
              help="Colocated: 0 (engine keeps its memory), 1 (weights to CPU), 2 (weights discarded).")
@click.option("--kv-dtype", default=None, help="Engine KV cache dtype [default: compute dtype].")
@click.option("--enforce-eager", is_flag=True, help="Engine without CUDA graphs.")
@click.option("--engine-process", default="shared", show_default=True,
              help="Colocated engine in the trainer's process (shared: TRL, verl) or its own (separate: OpenRLHF).")
@click.option("--prompts", type=int, default=64, show_default=True, help="Prompts per rollout step (whole job).")
@click.option("--generations", type=int, default=8, show_default=True, help="Completions per prompt.")
@click.option("--prompt-len", type=TOKENS, default=512, show_default=True, help="Longest prompt (tokens).")
@click.option("--completion-len", type=TOKENS, default=512, show_default=True, help="Longest completion (tokens).")
@click.option("--score-micro-batch", type=int, default=None,
              help="Sequences per GPU in reference/reward/log-prob forwards [default: --micro-batch].")
@click.option("--no-solve", is_flag=True, help="Skip the solvers (utilisation, completion, generations, placement).")
@click.option("--export", "export", default=None, help="Print the job as trl, verl or openrlhf configuration.")
@units_option
@json_option
def command(model: str, units: str, as_json: bool, export: str | None, no_solve: bool, **flags) -> None:
    """Per-GPU memory of a post-training job (GRPO, PPO, DPO...): each phase (rollout,
    weight sync, scoring, training) by role, the peak and what sets it, host RAM per
    node, and the settings that make it fit."""
    job = job_from_flags(model, flags)
    if export:
        from vramplan.export.rl import render

        click.echo(render(export, job), nl=False)
        return
    from vramplan.jobs.solvers import report_rl

    data = report_rl(job, solve=not no_solve).to_dict()
    if as_json:
        emit_json(data)
        return
    _print(data, units)


def job_from_flags(model: str, f: dict):
    """The RLJob the flags describe."""
    from vramplan.jobs import FrozenRole, RLJob, RolloutEngine, TrainerRole
    from vramplan.training import TrainingSetup

    setup = TrainingSetup(method=f["method"], precision=f["precision"], optimizer=f["optimizer"],
                          batch=f["micro_batch"], recompute=f["recompute"], lora_rank=f["lora_rank"],
                          fused_ce=f["fused_ce"])
    policy = TrainerRole(setup=setup, offload_params=f["offload_params"], offload_optimizer=f["offload_optimizer"])
    rewards = None
    if f["no_reward_model"]:
        rewards = ()
    elif f["reward_models"]:
        rewards = tuple(FrozenRole(model=m, offload=f["offload_reward"]) for m in f["reward_models"])
    elif f["offload_reward"]:  # the algorithm's own reward model, offloaded (none for GRPO/RLOO/DPO)
        from vramplan.jobs.roles import ALGOS

        spec = ALGOS.get(f["algo"])
        rewards = (FrozenRole(offload=True),) if spec is not None and spec.reward_model else ()
    engine = RolloutEngine(tp=f["rollout_tp"], gpu_memory_utilization=f["gpu_memory_utilization"],
                           max_model_len=f["max_model_len"], max_num_seqs=f["max_num_seqs"],
                           max_num_batched_tokens=f["max_num_batched_tokens"],
                           sleep_level=f["sleep_level"], kv_dtype=f["kv_dtype"], enforce_eager=f["enforce_eager"])
    return RLJob(model=model, algo=f["algo"], gpu=f["gpu"], gpus=f["gpus"], gpus_per_node=f["gpus_per_node"],
                 placement=f["placement"], rollout_gpus=f["rollout_gpus"], sharding=f["sharding"], policy=policy,
                 critic=TrainerRole(model=f["critic_model"], setup=setup) if f["critic_model"] else None,
                 reference=FrozenRole(model=f["reference_model"], offload=f["offload_reference"]),
                 rewards=rewards, kl_coef=f["kl_coef"], rollout=engine, prompts_per_step=f["prompts"],
                 generations=f["generations"], prompt_tokens=f["prompt_len"], completion_tokens=f["completion_len"],
                 score_micro_batch=f["score_micro_batch"], engine_process=f["engine_process"])


TABLE_WIDTH = 110
"""Columns the table is laid out in at least (eight roles and the total fit)."""


def _print(data: dict, units: str) -> None:
    from vramplan.units import GB, GiB, format_bytes

    out = console()
    if out.width < TABLE_WIDTH:  # a role per column: keep the table whole when piped (80 columns)
        from rich.console import Console

        out = Console(width=TABLE_WIDTH)
    scale = GiB if units == "GiB" else GB

    def b(n: int | None) -> str:
        return "-" if n is None else format_bytes(n, units)

    def cell(n: int) -> str:
        return f"{n / scale:.2f}"

    out.print(f"{data['model']}: {data['algo']} on {data['gpus']} x {data['gpu']}, {data['placement']}; "
              f"roles: {', '.join(data['roles'])}")
    for g in data["groups"]:
        roles = sorted({r for p in g["phases"] for r in p["by_role"]})
        t = table("phase", *roles, "total", title=f"{g['group']} GPUs ({g['num_gpus']}), per GPU, {units}",
                  right=(*roles, "total"))
        t.columns[0].min_width = max(len(p["phase"]) + (7 if p["phase"] == g["peak_phase"] else 0)
                                     for p in g["phases"])
        for col in t.columns:
            col.no_wrap = True
            col.min_width = max(col.min_width or 0, len(str(col.header)))
        for p in g["phases"]:
            mark = " (peak)" if p["phase"] == g["peak_phase"] else ""
            t.add_row(p["phase"] + mark, *[cell(p["by_role"].get(r, 0)) for r in roles], cell(p["total_bytes"]))
        out.print(t)
        word = "fits" if g["fits"] else "does NOT fit"
        out.print(f"{g['group']}: peak {b(g['peak_bytes'])} in {g['peak_phase']} (set by {g['peak_role']}); "
                  f"{word} in {b(g['capacity_bytes'])}, headroom {b(g['headroom_bytes'])}")
    r = data["rollout"]
    if r:
        out.print(f"rollout: {r['instances']} vLLM instance(s) x tp {r['tp']} at gpu_memory_utilization "
                  f"{r['gpu_memory_utilization']}; KV pool {b(r['kv_pool_bytes'])} per GPU, "
                  f"{r['sequences_per_instance']} sequences per instance need {b(r['kv_needed_bytes'])}; "
                  f"{r['concurrent_sequences']} at once, {r['waves']} wave(s)")
    if data["host"]:
        out.print(f"host RAM per node: {b(data['host_bytes_per_node'])} ("
                  + "; ".join(f"{h['role']} {h['name']} {b(h['bytes_per_node'])}" for h in data["host"]) + ")")
    s = data["solvers"]
    u = s["gpu_memory_utilization"]
    if u["smallest"] is not None and u["largest"] is not None:
        out.print(f"gpu_memory_utilization that works: {u['smallest']} .. {u['largest']}")
    elif u["smallest"] is not None:
        out.print(f"gpu_memory_utilization: vLLM starts from {u['smallest']}, but no value fits every phase")
    if s["longest_completion_tokens"] is not None:
        out.print(f"longest completion that fits: {s['longest_completion_tokens']} tokens; most generations in one "
                  f"wave: {s['most_generations']}")
    if s["placements"]:
        best = s["placements"][0]
        where = "colocated" if best["placement"] == "colocated" else \
            f"split {best['engine_gpus']} engine + {best['trainer_gpus']} trainer GPUs"
        out.print(f"best placement on {data['gpus']} GPUs: {where} ({'fits' if best['fits'] else 'does not fit'})")
    for c in data["advice"]:
        out.print(f"advice: {c['change']}: peak {b(c['peak_bytes'])} ({'fits' if c['fits'] else 'still too big'})")
    for a in data["assumptions"]:
        out.print(f"assumption: {a}")
    for w in data["warnings"]:
        out.print(f"warning: {w}")
