"""Meta-training runs: outer steps, pruning rounds, checkpoints, resume.

A run directory holds ``config.json`` (the full ``RunConfig``), ``checkpoint.safetensors`` (the
latest resumable state: meta-parameters, masks, Adam state, RNG states, history), ``model.safetensors``
(the latest meta-learned model, without optimiser state) and, with pruning, ``round_{k}.safetensors``
after each pruning round, so one run gives a whole PSNR-vs-size curve. Re-running the same command
resumes from the checkpoint; a resumed run ends bit-for-bit where an uninterrupted one would (CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from metasparse.config import RunConfig, build_problem
from metasparse.errors import ConfigError, MetasparseError, ModelError, TrainingDivergedError
from metasparse.meta.engine import MetaLearner
from metasparse.metrics import psnr_from_mse
from metasparse.modalities.loading import BatchSource
from metasparse.training import distributed
from metasparse.training.algorithm1 import needs_prune, prune_round, total_steps
from metasparse.training.model_file import MetaModel, check_meta_layout
from metasparse.utils import tensorfile as ckpt
from metasparse.utils.device import resolve_device


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        source: BatchSource | None = None,
        device: str | torch.device | None = None,
        log: Callable[[str], None] = lambda s: None,
    ):
        self.config = config.validate()  # before any work: a bad value fails here, not after the dense phase
        self.run_dir = Path(run_dir)
        self.device = torch.device(device) if device is not None else resolve_device(config.train.device)
        self.log = log
        self.source = source if source is not None else BatchSource(config.data, self.device)
        self.batch_generator = torch.Generator().manual_seed(config.train.seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(config.train.seed + 1)
        init_generator = torch.Generator().manual_seed(config.train.seed)
        self.masks: dict[str, torch.Tensor] | None = None
        self.problem = build_problem(config, self.masks)
        meta = self.problem.init_meta(init_generator, device=self.device)
        # Under torchrun each rank takes a slice of the global batch (see metasparse.training.distributed).
        self.world = distributed.world()
        self.batch_slice = distributed.batch_slice(config.meta.batch_size, self.world)
        reducer = distributed.all_reduce_mean_ if self.world.distributed else None
        self.learner = MetaLearner(self.problem, config.meta, meta, grad_reducer=reducer)
        self.step = 0
        self.round = 0  # pruning rounds applied so far
        self.history: list[dict] = []

    # -- persistence --------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.safetensors"

    def save_checkpoint(self) -> None:
        self._check_finite()
        opt_tensors, opt_info = ckpt.optimizer_state(self.learner.optimizer)
        tensors = {
            "meta": self.learner.detached_meta(),
            "optim": opt_tensors,
            "rng": {
                "batches": self.batch_generator.get_state(),
                "noise": self.noise_generator.get_state().cpu(),
            },
        }
        if self.masks:
            tensors["masks"] = self.masks
        info = {
            "kind": "checkpoint",
            "config": self.config.to_dict(),
            "step": self.step,
            "round": self.round,
            "optimizer": opt_info,
            "history": self.history,
        }
        distributed.main_only(ckpt.save, self.checkpoint_path, tensors, info)

    def save_model(self, path: str | Path, extra: dict | None = None) -> None:
        """Write the model file (rank 0 only; every rank returns once it is complete)."""
        self._check_finite()
        distributed.main_only(self.meta_model().save, path, extra)

    def _check_finite(self) -> None:
        """A diverged state is never saved: the last good checkpoint and model stay as they are."""
        for group, tensors in self.learner.detached_meta().items():
            for name, value in tensors.items():
                if not bool(torch.isfinite(value).all()):
                    raise TrainingDivergedError(
                        f"training diverged at step {self.step} ({group}/{name} is not finite; the last "
                        "checkpoint is kept); lower meta.outer_lr or inner_lr"
                    )

    def try_resume(self) -> bool:
        resumed = self._load_checkpoint()
        if self.world.distributed:
            # A node that cannot see the run directory would otherwise silently start over.
            state = [float(v.detach().double().sum()) for v in self.learner.params()]
            distributed.check_same([resumed, self.step, self.round, sum(state),
                                    float(self.batch_generator.get_state().double().sum())],
                                   "the resumed state (checkpoint found, step, round, parameters, RNG)")
        return resumed

    def _load_checkpoint(self) -> bool:
        if self.world.is_main:
            ckpt.remove_orphaned_temporaries(self.run_dir, _is_run_file, min_age_s=0.0)
        path = self.checkpoint_path
        if not path.exists():
            return False
        try:
            flat, info = ckpt.load(path, self.device)
        except ModelError as e:
            raise ModelError(f"{e}; use --fresh to start over") from None
        if info.get("kind") != "checkpoint" or not isinstance(info.get("config"), dict):
            raise ModelError(f"{path} is not a training checkpoint (kind {info.get('kind')!r}); "
                             "use --fresh to start over")
        try:
            saved = RunConfig.from_dict(info["config"])
        except MetasparseError as e:
            raise ModelError(f"{path}: invalid run configuration ({e}); use --fresh to start over") from None
        if _resume_key(saved) != _resume_key(self.config):
            raise ConfigError(
                f"{self.run_dir} holds a run with a different configuration; use another --out or --fresh"
            )
        step, round_ = _checked_position(path, info, saved)
        masks = ckpt.unflatten(flat, "masks/") or None
        meta = ckpt.unflatten(flat, "meta/")
        check_meta_layout(path, self.config, meta, masks)
        for key in ("rng/batches", "rng/noise"):
            if key not in flat:
                raise ModelError(f"{path} has no tensor {key!r} (a corrupt file); use --fresh to start over")
        self.set_masks(masks)
        with torch.no_grad():
            for g, d in self.learner.meta.items():
                for k, v in d.items():
                    v.copy_(meta[g][k])
        optim = {k[len("optim/"):]: v for k, v in flat.items() if k.startswith("optim/")}
        try:
            ckpt.load_optimizer_state(self.learner.optimizer, optim, info["optimizer"])
            self.batch_generator.set_state(flat["rng/batches"].cpu())
            self.noise_generator.set_state(flat["rng/noise"].cpu())
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelError(f"{path}: unusable optimiser or random state ({first}); "
                             "use --fresh to start over") from None
        history = info.get("history", [])
        self.step = step
        self.round = round_
        self.history = list(history) if isinstance(history, list) else []
        return True

    def set_masks(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Install pruning masks: the problem and (compiled) meta-gradient are rebuilt around them."""
        self.masks = masks
        self.problem = self.problem.with_masks(masks)
        self.learner.set_problem(self.problem)
        if masks:
            with torch.no_grad():
                for k, m in masks.items():
                    self.learner.meta["theta"][k].mul_(m)

    def meta_model(self) -> MetaModel:
        return MetaModel(self.config, self.learner.detached_meta(), self.masks, {"step": self.step, "round": self.round})

    # -- pruning ------------------------------------------------------------------------------
    def prune_once(self) -> None:
        theta = self.learner.detached_meta()["theta"]
        new = prune_round(self.config, theta, self.masks, self.problem.prunable_names(), self.step)
        self.set_masks({k: v.to(self.device) for k, v in new.items()})
        if self.round == 0 and self.config.prune.fresh_optimizer:  # as the official code: a new Adam for pruning
            self.learner.reset_optimizer()
        self.round += 1

    # -- the loop -----------------------------------------------------------------------------
    def run(self, max_steps: int | None = None, progress: Callable[[int, dict], None] | None = None,
            deadline: float | None = None) -> MetaModel:
        """Train until the configured total (or ``max_steps`` more steps, to simulate a kill).

        With ``deadline`` (a ``time.monotonic()`` value; ``math.inf`` for none) the run goes in chunks of
        ``train.log_every`` steps and, once a chunk ends past the deadline, saves the checkpoint and the
        model and returns early (``self.step < total_steps(config)``; running again resumes). Rank 0's
        clock decides, so that no rank waits in a collective for one that stopped. A run with nothing
        to do still writes its checkpoint and model.
        """
        if deadline is None:
            return self._run(max_steps, progress)
        stop = total_steps(self.config) if max_steps is None else min(total_steps(self.config), self.step + max_steps)
        while self.step < stop:
            self._run(min(self.config.train.log_every, stop - self.step), progress)
            if deadline != math.inf and distributed.agree(time.monotonic() > deadline):
                self.save_checkpoint()
                self.save_model(self.run_dir / "model.safetensors")
                break
        if self.step == 0:
            self.save_checkpoint()
            self.save_model(self.run_dir / "model.safetensors")
        return self.meta_model()

    def _run(self, max_steps: int | None, progress: Callable[[int, dict], None] | None) -> MetaModel:
        cfg = self.config
        end = total_steps(cfg)
        stop = end if max_steps is None else min(end, self.step + max_steps)
        recent: list[torch.Tensor] = []
        t0 = time.perf_counter()
        while self.step < stop:
            if self._needs_prune():
                self.save_round(self.round)
                self.prune_once()
            self.problem.on_outer_step(self.step, self.learner.meta)  # e.g. MSCN's training budget
            targets = self.source.sample(cfg.meta.batch_size, self.batch_generator)
            if self.world.distributed:  # every rank draws the whole batch so the generators stay in step
                targets = targets[self.batch_slice]
            losses = self.learner.step(self.source.coords, targets, self.noise_generator)
            recent.append(losses.detach())
            self.step += 1
            if self.step % cfg.train.log_every == 0 or self.step == stop:
                mse = distributed.all_gather_cat(torch.cat(recent))
                entry = {
                    "step": self.step,
                    "round": self.round,
                    "loss": float(mse.mean()),
                    "psnr": float(psnr_from_mse(mse).mean()),
                    "seconds": time.perf_counter() - t0,
                }
                if not math.isfinite(entry["loss"]):
                    raise TrainingDivergedError(
                        f"training diverged at step {self.step} (loss {entry['loss']}); lower meta.outer_lr or inner_lr"
                    )
                self.history.append(entry)
                recent = []
                if progress is not None:
                    progress(self.step, entry)
            if self.step % cfg.train.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
                self.save_model(self.run_dir / "model.safetensors")
        if self.step == end and cfg.prune.rounds:
            self.save_round(self.round)
        return self.meta_model()

    def _needs_prune(self) -> bool:
        return needs_prune(self.config, self.problem.supports_pruning, self.step, self.round)

    def save_round(self, k: int) -> None:
        path = self.run_dir / f"round_{k:02d}.safetensors"
        self.save_model(path, {"round": k})


def _is_run_file(name: str) -> bool:
    return name.endswith(".safetensors") or name == "config.json"


def _checked_position(path: Path, info: dict, saved: RunConfig) -> tuple[int, int]:
    """The checkpoint's step and pruning round, which must lie within the schedule it was saved with."""
    end = total_steps(saved)
    step = info.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= end:
        raise ModelError(f"{path}: invalid step {step!r} (expected an integer from 0 to {end}, "
                         "the run's schedule); use --fresh to start over")
    round_ = info.get("round", 0)
    if not isinstance(round_, int) or isinstance(round_, bool) or not 0 <= round_ <= saved.prune.rounds:
        raise ModelError(f"{path}: invalid pruning round {round_!r} (expected an integer from 0 to "
                         f"{saved.prune.rounds}); use --fresh to start over")
    return step, round_


def _resume_key(config: RunConfig) -> str:
    # Settings that only change logging, the length of the run, where the data lives (a moved folder,
    # another machine's data root) or which engine computes the same meta-gradient may differ on resume.
    d = RunConfig.from_dict(json.loads(config.to_json())).to_dict()  # normalise 30 vs 30.0
    for section in ("data", "val_data"):
        if d.get(section):
            d[section].pop("path", None)
            d[section].pop("extra_paths", None)
    d["meta"].pop("fast_siren", None)
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("log_every", "checkpoint_every", "steps", "device")}
    d["prune"] = {k: v for k, v in d["prune"].items() if k not in ("rounds",)}
    d.pop("description", None)
    d.pop("name", None)
    return json.dumps(d, sort_keys=True)
