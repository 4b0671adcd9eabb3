"""Distillation of the spiking student from BERT: stage 1 (pre-training) and stage 2 (task).

Stage 1 (``pretrain``) matches the student's T-averaged block outputs, through learned projections
P_i (Linear + LayerNorm), to the base teacher's hidden states on unlabelled text:

    FEAT = sum_i MSE(P_i(mean_T block_i), teacher_hidden[map(i)])   over real tokens    (eq. FEAT)

Stage 2 (``distill``) adds the task terms; ``s``, ``t`` are the student's T-averaged and the
fine-tuned teacher's logits, E_s, E_t the word-embedding matrices, Q a learned Linear when the
widths differ (identity when equal, the official case):

    loss = w_ce CE(s, y) + w_kd tau^2 KL(softmax(t / tau) || softmax(s / tau))
         + w_feat FEAT + w_emb MSE(Q(E_s[rows]), E_t[rows])                                 (eq. KD)

Departures from the official scripts, each explicit: FEAT is not divided by the batch size a
second time; with ``mask_padding`` the MSE runs over real tokens only (pads have no teacher targets
in the cache either way, so without masking FEAT also covers real tokens only); stage 2 loads
stage 1 strictly (the official ``strict=False`` silently loads nothing when depths differ);
augmented sentences take the teacher's argmax as their CE label and its logits for KD (the
official augmentation writes random labels); selection is on dev, never on test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spikebert.config import DistillConfig, PretrainConfig, StudentConfig
from spikebert.contract.errors import SpikebertError
from spikebert.data import TextDataset
from spikebert.engine import LoopConfig, Trainer
from spikebert.evaluation import evaluate_spikebert
from spikebert.io import load_checkpoint, save_checkpoint, save_student, text_sha256, weights_identity
from spikebert.model import SpikeBERT, TokenBatchNorm
from spikebert.targets import OnlineTargets, build_cache
from spikebert.teacher import load_encoder, load_teacher, load_tokenizer
from spikebert.tokenize import Batcher, tokenizer_fingerprint

log = logging.getLogger(__name__)

STAGE1_FORMAT = "spikebert-stage1/1"


def teacher_layer_map(student_depth: int, teacher_layers: int) -> list[int]:
    """Indices into ``hidden_states`` (0 = embeddings) for each student block.

    Official rule ``hidden_states[1:][::teacher_layers // depth]``: the first layer of each group.
    """
    if student_depth > teacher_layers:
        raise SpikebertError(f"student depth {student_depth} exceeds the teacher's {teacher_layers} layers")
    step = teacher_layers // student_depth
    return [1 + i * step for i in range(student_depth)]


class FeatureProjector(nn.Module):
    """Per-block Linear(D, D_teacher) + LayerNorm: the distillation taps (not part of inference)."""

    def __init__(self, *, depth: int, dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, teacher_dim), nn.LayerNorm(teacher_dim)) for _ in range(depth)
        )

    def forward(self, block_outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [p(x) for p, x in zip(self.proj, block_outputs)]


def init_embedding_from_teacher(student: SpikeBERT, teacher) -> None:
    """Copy the teacher's word embeddings (or their top principal components when widths differ).

    Stands in for the official whole-matrix embedding MSE: the student's input spikes become the
    sign pattern of the teacher's embedding.
    """
    w = teacher.get_input_embeddings().weight.detach()
    if w.shape[0] != student.cfg.vocab_size:
        raise SpikebertError(f"teacher vocab {w.shape[0]} != student vocab {student.cfg.vocab_size}")
    D = student.cfg.dim
    if w.shape[1] != D:
        centred = w - w.mean(0)
        q = min(D, *centred.shape)  # PCA has at most min(V, H) components
        _, _, v = torch.pca_lowrank(centred, q=q, center=False)
        w = centred @ v  # (V, q)
        w = w / w.std()
        if q < D:  # a student wider than its teacher: the teacher's whole space, the rest small random
            log.info("student width %d > teacher width %d: embedding = the teacher's %d principal components "
                     "+ %d columns N(0, 0.02)", D, q, q, D - q)
            w = torch.cat([w, 0.02 * torch.randn(w.shape[0], D - q, dtype=w.dtype)], dim=1)
    student.embed.weight.data.copy_(w)


class DistillModel(nn.Module):
    """Everything stage 1/2 trains: the student, the feature projections, the embedding map Q."""

    def __init__(self, student: SpikeBERT, *, teacher_dim: int, with_emb_map: bool) -> None:
        super().__init__()
        self.student = student
        self.projector = FeatureProjector(depth=student.cfg.depth, dim=student.cfg.dim, teacher_dim=teacher_dim)
        need_map = with_emb_map and student.cfg.dim != teacher_dim
        self.emb_map = nn.Linear(student.cfg.dim, teacher_dim, bias=False) if need_map else None

    def forward(self, input_ids: torch.Tensor, *, emb_target: torch.Tensor | None = None,
                emb_rows: torch.Tensor | None = None):
        """(student output, projected block outputs, embedding term or None). One forward call, so
        DDP sees every parameter use and synchronises the gradients."""
        out = self.student(input_ids)
        emb = None
        if emb_target is not None:
            emb = embedding_loss(self.student.embed.weight, emb_target, self.emb_map, emb_rows)
        return out, self.projector(out.hidden), emb


def feature_loss(student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor],
                 mask: torch.Tensor) -> torch.Tensor:
    """Eq. FEAT: per-layer MSE over the tokens where ``mask`` (B, L) is true, summed over layers."""
    total = mask.new_zeros((), dtype=torch.get_default_dtype())
    for s, t in zip(student_feats, teacher_feats, strict=True):
        m = mask.unsqueeze(-1).to(s.dtype)  # (B, L, 1)
        total = total + (((s - t.to(s.dtype)) ** 2) * m).sum() / (m.sum() * s.shape[-1])
    return total


def embedding_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, emb_map: nn.Module | None,
                   rows: torch.Tensor | None) -> torch.Tensor:
    """MSE(Q(E_s[rows]), E_t[rows]); all rows when ``rows`` is None (official: the whole matrix)."""
    if rows is not None:
        student_emb, teacher_emb = student_emb[rows], teacher_emb[rows]
    mapped = emb_map(student_emb) if emb_map is not None else student_emb
    return F.mse_loss(mapped, teacher_emb)


def kd_temperature(cfg: DistillConfig, progress: float) -> float:
    """The KD temperature at ``progress`` in [0, 1] of the run: ``cfg.kd_temperature`` throughout, or, with
    ``cfg.kd_temperature_final`` > 0, linear from the one to the other."""
    if not 0.0 <= progress <= 1.0:
        raise SpikebertError(f"training progress must be in [0, 1], got {progress}")
    if cfg.kd_temperature_final <= 0:
        return cfg.kd_temperature
    return cfg.kd_temperature + (cfg.kd_temperature_final - cfg.kd_temperature) * progress


def distill_loss(
    cfg: DistillConfig,
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_feats: list[torch.Tensor],
    teacher_feats: list[torch.Tensor],
    mask: torch.Tensor,
    emb: torch.Tensor | None = None,
    progress: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. KD. ``mask`` (B, L) selects the tokens of FEAT; ``emb`` is the embedding term, if any; ``progress``
    (0 at the first step, 1 at the last) places the step on the KD temperature's schedule."""
    ce = F.cross_entropy(student_logits, labels)
    tau = kd_temperature(cfg, progress)
    kd = F.kl_div(
        F.log_softmax(student_logits / tau, -1), F.softmax(teacher_logits.to(student_logits.dtype) / tau, -1),
        reduction="batchmean",
    ) * tau**2
    feat = feature_loss(student_feats, teacher_feats, mask)
    total = cfg.w_ce * ce + cfg.w_kd * kd + cfg.w_feat * feat
    parts = {"ce": ce, "kd": kd, "feat": feat}
    if cfg.kd_temperature_final > 0:  # annealed: the log shows where the schedule stands
        parts["kd_temperature"] = torch.tensor(tau)
    if emb is not None:
        total = total + cfg.w_emb * emb
        parts["emb"] = emb
    parts["loss"] = total
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _check_vocab(student_cfg: StudentConfig, tokenizer) -> None:
    if len(tokenizer) != student_cfg.vocab_size or tokenizer.pad_token_id != student_cfg.pad_token_id:
        raise SpikebertError(
            f"student vocab/pad ({student_cfg.vocab_size}, {student_cfg.pad_token_id}) do not match the "
            f"teacher tokenizer ({len(tokenizer)}, {tokenizer.pad_token_id})"
        )


def _loop(cfg, **overrides) -> LoopConfig:
    """The loop settings every stage config shares; ``overrides`` (e.g. ``schedule``) replace LoopConfig's
    defaults (cosine schedule, no warm-up, no clipping)."""
    return LoopConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      seed=cfg.seed, mixed_precision=cfg.mixed_precision, checkpoint_every=cfg.checkpoint_every,
                      **overrides)


def _feature_mask(enc: dict[str, torch.Tensor]) -> torch.Tensor:
    return enc["attention_mask"].bool()


def _cache(run_dir: Path, *, tokenizer, max_len: int, **kw):
    """The teacher cache, built by the main process while the others wait (DDP), then shared."""
    from accelerate import PartialState

    with PartialState().main_process_first():
        return build_cache(run_dir / "teacher_cache", batcher=Batcher(tokenizer, max_len=max_len), **kw)


def _device() -> torch.device:
    from accelerate import PartialState

    return PartialState().device


# -- stage 1 -----------------------------------------------------------------------------------
def pretrain(student_cfg: StudentConfig, cfg: PretrainConfig, *, corpus: list[str], dev_sentences: list[str],
             run_dir: Path, resume: bool = True, stop_after_minutes: float = 0.0,
             stop_after_steps: int = 0) -> dict[str, float]:
    """Stage 1 on ``corpus``; selection by eq. FEAT on ``dev_sentences`` (lower is better).

    Saves ``run_dir/model.pt`` (format ``spikebert-stage1/1``: student without classifier + projections).
    """
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.teacher)
    _check_vocab(student_cfg, tokenizer)
    teacher = load_encoder(cfg.teacher).eval().requires_grad_(False).to(_device())
    layers = teacher_layer_map(student_cfg.depth, teacher.config.num_hidden_layers)
    student = SpikeBERT(student_cfg)
    if cfg.embedding_init == "teacher":
        init_embedding_from_teacher(student, teacher)
    model = DistillModel(student, teacher_dim=teacher.config.hidden_size, with_emb_map=False)
    batcher = Batcher(tokenizer, max_len=student_cfg.max_len, pad_to_max=not student_cfg.mask_padding)
    data = TextDataset(corpus, [0] * len(corpus), "corpus")
    dev = TextDataset(dev_sentences, [0] * len(dev_sentences), "dev")
    targets = (_cache(run_dir, teacher=teacher, teacher_dir=cfg.teacher, tokenizer=tokenizer,
                      max_len=student_cfg.max_len, sentences=corpus, layers=layers)
               if cfg.teacher_cache else OnlineTargets(teacher, layers))
    dev_targets = OnlineTargets(teacher, layers)
    trainer = Trainer(run_dir=run_dir, model=model, cfg=_loop(cfg), n_examples=len(data), desc="pretrain",
                      fingerprint={"student": student_cfg, "pretrain": cfg,
                                   "teacher": weights_identity(cfg.teacher), "corpus_sha256": text_sha256(corpus)},
                      resume=resume)
    student_cfg.to_json(run_dir / "student_config.json")
    cfg.to_json(run_dir / "pretrain_config.json")
    device = trainer.acc.device

    def step(m, idx):
        enc, _ = batcher(data, idx)
        t_feats = targets(idx, enc).hidden
        enc = {k: v.to(device) for k, v in enc.items()}
        _, s_feats, _ = m(enc["input_ids"])
        feat = feature_loss(s_feats, [t.to(device) for t in t_feats],
                            _feature_mask(enc))
        return cfg.w_feat * feat, {"feat": float(feat.detach()), "loss": float(cfg.w_feat * feat.detach())}

    @torch.no_grad()
    def evaluate(m):
        m.eval()
        total, n = 0.0, 0
        for idx in torch.arange(len(dev)).split(64):
            enc, _ = batcher(dev, idx)
            t_feats = dev_targets(idx, enc).hidden
            enc = {k: v.to(device) for k, v in enc.items()}
            _, s_feats, _ = m(enc["input_ids"])
            total += float(feature_loss(s_feats, t_feats,
                                        _feature_mask(enc))) * len(idx)
            n += len(idx)
        return {"metric": -total / n, "dev_feat_mse": total / n}

    def save_best(m, metrics):
        save_checkpoint(run_dir / "model.pt", {
            "format": STAGE1_FORMAT,
            "config": m.student.cfg.to_dict(),
            "student": {k: v for k, v in m.student.state_dict().items() if not k.startswith("classifier.")},
            "projector": m.projector.state_dict(),
            "teacher": str(cfg.teacher),
            "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
            "metrics": metrics,
            "pretrain_config": cfg.to_dict(),
        })

    state = trainer.fit(step, evaluate, save_best, stop_after_minutes=stop_after_minutes,
                        stop_after_steps=stop_after_steps)
    return {"dev_feat_mse": -state.best_metric, "epoch": state.best_epoch}


# the StudentConfig fields that shape the weights: an --init checkpoint must agree on them; the dynamics (T, tau,
# thresholds, scale, surrogate) and padding masking may differ
ARCHITECTURE_FIELDS = ("vocab_size", "max_len", "dim", "depth", "heads", "mlp_ratio", "norm", "positions", "residual",
                       "attention", "attn_scale", "neuron")


def check_architecture(path, stored, cfg, fields=ARCHITECTURE_FIELDS) -> None:
    """Refuse, by field name, a checkpoint at ``path`` whose student config ``stored`` differs from ``cfg`` in ``fields``."""
    for name in fields:
        if getattr(stored, name) != getattr(cfg, name):
            raise SpikebertError(f"{path}: its student has {name}={getattr(stored, name)!r}, this one "
                                 f"{getattr(cfg, name)!r}; start from a model of the same architecture")


def load_init(path: str | Path, model: DistillModel, *, tokenizer) -> str:
    """Start stage 2 from ``path``: a stage-1 model (:func:`load_stage1`) or a trained stage-2 student
    (``spikebert-student/1``, classifier included: a warm start, e.g. a further stage on teacher-labelled
    augmentation). Returns the format loaded. Projections to the teacher start fresh for a student."""
    payload = load_checkpoint(path, expected_format=(STAGE1_FORMAT, SpikeBERT.CHECKPOINT_FORMAT))
    if payload["format"] == STAGE1_FORMAT:
        _load_stage1_payload(path, payload, model, tokenizer=tokenizer)
        return STAGE1_FORMAT
    from spikebert.io import build_student

    previous = build_student(path, payload, SpikeBERT)  # validates config, tensor names, shapes and values
    if payload["tokenizer_sha256"] != tokenizer_fingerprint(tokenizer):
        raise SpikebertError(f"{path} was trained with another vocabulary than this teacher's tokenizer")
    check_architecture(path, previous.cfg, model.student.cfg, ARCHITECTURE_FIELDS + ("num_classes",))
    model.student.load_state_dict(previous.state_dict(), strict=True)
    log.info("stage 2 starts from the student %s (its dev accuracy %.4f)", path,
             payload["metrics"].get("dev_accuracy", float("nan")))
    return SpikeBERT.CHECKPOINT_FORMAT


def load_stage1(path: str | Path, model: DistillModel, *, tokenizer) -> None:
    """Load stage-1 weights into ``model`` strictly: every key and shape must match, apart from the
    classifier, which stage 1 does not train. Dynamics fields (T, tau, thresholds) may differ."""
    _load_stage1_payload(path, load_checkpoint(path, expected_format=STAGE1_FORMAT), model, tokenizer=tokenizer)


def _load_stage1_payload(path, payload: dict, model: DistillModel, *, tokenizer) -> None:
    if payload["tokenizer_sha256"] != tokenizer_fingerprint(tokenizer):
        raise SpikebertError(f"{path} was pre-trained with another vocabulary than the teacher's tokenizer")
    try:
        stored = StudentConfig.from_dict(payload["config"])
    except SpikebertError as err:
        raise type(err)(f"{path}: its stored config is invalid: {err}") from err
    check_architecture(path, stored, model.student.cfg)
    try:
        result = model.student.load_state_dict(payload["student"], strict=False)
        model.projector.load_state_dict(payload["projector"], strict=True)
    except RuntimeError as err:
        raise SpikebertError(f"{path}: stage-1 weights do not fit this student: {err}") from err
    missing = [k for k in result.missing_keys if not k.startswith("classifier.")]
    if missing or result.unexpected_keys:
        raise SpikebertError(f"{path}: stage-1 weights do not fit: missing {missing}, "
                         f"unexpected {result.unexpected_keys}")
    log.info("stage 1 weights loaded from %s (dev FEAT %.4f)", path,
             payload["metrics"].get("dev_feat_mse", float("nan")))


# -- stage 2 -----------------------------------------------------------------------------------
def distill(
    student_cfg: StudentConfig,
    cfg: DistillConfig,
    *,
    teacher_dir: str,
    train: TextDataset,
    dev: TextDataset,
    run_dir: Path,
    task: str,
    init: str | Path | None = None,
    resume: bool = True,
    stop_after_minutes: float = 0.0,
    stop_after_steps: int = 0,
) -> dict[str, float]:
    """Stage 2: train on ``train`` (+ teacher-labelled augmentation), select on dev accuracy.

    The best student goes to ``run_dir/model.pt``; state and metrics as in ``spikebert.engine``.
    """
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    tokenizer, teacher = task_teacher(student_cfg, teacher_dir)
    layers = teacher_layer_map(student_cfg.depth, teacher.config.num_hidden_layers)
    student = SpikeBERT(student_cfg)
    model = DistillModel(student, teacher_dim=teacher.config.hidden_size, with_emb_map=cfg.w_emb > 0)
    if init:
        load_init(init, model, tokenizer=tokenizer)
    elif cfg.embedding_init == "teacher":
        init_embedding_from_teacher(student, teacher)
    teacher_emb = teacher.get_input_embeddings().weight.detach()

    train, data, is_aug = training_data(train, cfg, tokenizer=tokenizer, teacher_emb=teacher_emb)
    sentences = data.sentences
    targets = (_cache(run_dir, teacher=teacher, teacher_dir=teacher_dir, tokenizer=tokenizer,
                      max_len=student_cfg.max_len, sentences=sentences, layers=layers)
               if cfg.teacher_cache else OnlineTargets(teacher, layers))
    batcher = Batcher(tokenizer, max_len=student_cfg.max_len, pad_to_max=not student_cfg.mask_padding)
    trainer = Trainer(run_dir=run_dir, model=model, cfg=_loop(cfg), n_examples=len(data), desc="distill",
                      fingerprint={"student": student_cfg, "distill": cfg,
                                   "data_sha256": text_sha256(sentences), "teacher": weights_identity(teacher_dir),
                                   "init": weights_identity(init) if init else ""},
                      resume=resume, ema_decay=cfg.ema_decay)
    student_cfg.to_json(run_dir / "student_config.json")
    cfg.to_json(run_dir / "distill_config.json")
    device = trainer.acc.device
    teacher_emb = teacher_emb.to(device)

    def step(m, idx):
        enc, labels = batcher(data, idx)
        t = targets(idx, enc)
        t_logits, t_feats = t.logits, t.hidden
        aug = is_aug[idx]
        labels = torch.where(aug, t_logits.argmax(-1).cpu(), labels)  # teacher labels for augmented sentences
        enc = {k: v.to(device) for k, v in enc.items()}
        rows = enc["input_ids"].unique() if cfg.emb_rows == "batch" else None
        s_out, s_feats, emb = m(enc["input_ids"], emb_target=teacher_emb if cfg.w_emb > 0 else None, emb_rows=rows)
        return distill_loss(cfg, student_logits=s_out.logits, teacher_logits=t_logits.to(device),
                            labels=labels.to(device), student_feats=s_feats,
                            teacher_feats=[t.to(device) for t in t_feats], mask=_feature_mask(enc),
                            emb=emb, progress=trainer.progress())

    evaluate, save_best = dev_selection(batcher, dev, run_dir=run_dir, tokenizer=tokenizer, teacher_dir=teacher_dir,
                                        task=task, cfg=cfg)

    def calibrate(m):  # the average's batch-norm statistics, recomputed for its weights (cfg.ema_bn_batches)
        recompute_batch_norm(m.student, batcher, data, batches=cfg.ema_bn_batches, batch_size=cfg.batch_size,
                             seed=cfg.seed)

    state = trainer.fit(step, evaluate, save_best, stop_after_minutes=stop_after_minutes,
                        stop_after_steps=stop_after_steps, calibrate_fn=calibrate if cfg.ema_bn_batches else None)
    return {"dev_accuracy": state.best_metric, "epoch": state.best_epoch, "train_sentences": len(train),
            "augmented_sentences": len(data) - len(train)}


def recompute_batch_norm(student: SpikeBERT, batcher: Batcher, data: TextDataset, *, batches: int,
                         batch_size: int, seed: int) -> int:
    """Recompute the running statistics of every ``TokenBatchNorm`` of ``student`` as the plain average over
    ``batches`` batches of ``data`` (drawn by ``seed``, without touching the global RNG), as SWA's
    ``update_bn`` does for averaged weights; returns the batches used (0 when the student has no batch norm)."""
    norms = [m for m in student.modules() if isinstance(m, TokenBatchNorm)]
    if not norms or batches < 1:
        return 0
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    chunks = order.split(batch_size)[:batches]
    momenta = [m.momentum for m in norms]
    was_training = student.training
    device = next(student.parameters()).device
    for m in norms:
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
    student.train()
    try:
        with torch.no_grad():
            for k, idx in enumerate(chunks):
                for m in norms:
                    m.momentum = 1.0 / (k + 1)  # running value <- the mean over the batches so far
                enc, _ = batcher(data, idx)
                student(enc["input_ids"].to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        student.train(was_training)
    return len(chunks)


def task_teacher(student_cfg, teacher_dir: str):
    """(tokenizer, frozen teacher on the training device) of a task-distillation stage, checked against
    the student's vocabulary and class count."""
    tokenizer = load_tokenizer(teacher_dir)
    _check_vocab(student_cfg, tokenizer)
    teacher = load_teacher(teacher_dir).eval().requires_grad_(False).to(_device())
    if teacher.config.num_labels != student_cfg.num_classes:
        raise SpikebertError(f"teacher {teacher_dir} has {teacher.config.num_labels} classes, the student "
                         f"{student_cfg.num_classes}: fine-tune the teacher on this task first")
    return tokenizer, teacher


def dev_selection(batcher: Batcher, dev: TextDataset, *, run_dir: Path, tokenizer, teacher_dir: str, task: str, cfg,
                  evaluate_fn=evaluate_spikebert):
    """(eval_fn, on_best) for ``Trainer.fit``: dev accuracy of the student (``evaluate_fn``, its kind's
    evaluation), which goes to ``run_dir/model.pt``."""

    def evaluate(m):
        result = evaluate_fn(m.student, batcher, dev)
        return {"metric": result["accuracy"], "dev_accuracy": result["accuracy"]}

    def save_best(m, metrics):
        save_student(run_dir / "model.pt", m.student, tokenizer=tokenizer, tokenizer_name=teacher_dir,
                     task=task, metrics=metrics, distill_cfg=cfg)

    return evaluate, save_best


def training_data(train: TextDataset, cfg, *, tokenizer,
                  teacher_emb: torch.Tensor) -> tuple[TextDataset, TextDataset, torch.Tensor]:
    """(the ``train_samples`` subset, it + its teacher-labelled augmentation, which rows are augmented)."""
    from spikebert.augment import augment_corpus

    train = train.subset(cfg.train_samples, seed=cfg.seed)
    augmented = []
    if cfg.augment is not None:
        augmented = augment_corpus(train.sentences, tokenizer=tokenizer, embeddings=teacher_emb, cfg=cfg.augment)
    is_aug = torch.zeros(len(train) + len(augmented), dtype=torch.bool)
    is_aug[len(train):] = True
    log.info("task data: %d sentences + %d augmented", len(train), len(augmented))
    data = TextDataset(train.sentences + augmented, train.labels + [0] * len(augmented), train.name + "+aug")
    return train, data, is_aug
