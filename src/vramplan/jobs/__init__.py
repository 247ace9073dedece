"""Jobs with several models: RL post-training (GRPO, PPO, DPO...) with a rollout engine.

    roles.py       the roles (policy, reference, reward, critic, rollout engine), the job, defaults
    validate.py    checks across roles (one tokenizer, engine tp, GPU counts)
    footprints.py  each role's per-GPU memory, from the single-job estimators
    phases.py      phases per GPU group, the peak over phases, host RAM per node
    result.py      :func:`estimate_rl` -> :class:`RLEstimate`
    solvers.py     largest utilisation, longest completion / most generations, placement, advice
"""

from vramplan.jobs.result import RLEstimate, estimate_rl
from vramplan.jobs.roles import ALGOS, FrozenRole, RLJob, RolloutEngine, TrainerRole

__all__ = ["ALGOS", "FrozenRole", "RLEstimate", "RLJob", "RolloutEngine", "TrainerRole", "estimate_rl"]
