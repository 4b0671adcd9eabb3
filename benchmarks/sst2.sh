#!/usr/bin/env bash
# SST-2 accuracy benchmark on the 2-core machine: every run resumes from its state.pt when re-run,
# so the script can be interrupted and started again (the compute budget is the sum of the runs'
# recorded wall seconds). Results: `python benchmarks/accuracy.py --runs runs/bench/sst-2`.
set -euo pipefail
SB=${SB:-.venv/bin/spikebert}
R=${R:-runs/bench/sst-2}
S=benchmarks/configs/student-sst2.json
# 1. teacher: all-MiniLM-L6-v2, whole SST-2 train split, one epoch, dropout on, selected on dev
$SB train teacher --data sst-2 --set epochs=1 --out $R/teacher
# 2. stage 1: WikiText-2 + SST-2 sentences (20k texts), base MiniLM as teacher
$SB train pretrain --data sst-2 --student $S --set max_samples=20000 --set batch_size=32 --set lr=5e-4 \
    --out $R/stage1
# 3. stage 2, main configuration (LayerNorm, masking on): whole train split, no augmentation
#    (the official SST-2 script also runs without), embedding loss on the batch's rows
$SB train distill --data sst-2 --teacher $R/teacher/model --student $S --init $R/stage1/model.pt \
    --set epochs=1 --set augment=null --set emb_rows=batch --out $R/student-main
# 4. ablations at equal, smaller budget (8k sentences, one epoch): norm, masking, stage 1
for variant in "layer true" "batch true" "layer false"; do
    set -- $variant
    $SB train distill --data sst-2 --teacher $R/teacher/model --student $S --student-set norm=$1 \
        --student-set mask_padding=$2 --set train_samples=8000 --set epochs=1 --set augment=null \
        --set emb_rows=batch --out $R/ablation-norm_$1-mask_$2
done
$SB train distill --data sst-2 --teacher $R/teacher/model --student $S --init $R/stage1/model.pt \
    --set train_samples=8000 --set epochs=1 --set augment=null --set emb_rows=batch --out $R/ablation-stage1
# 5. the better norm of the ablation (batch) on the whole train split, one epoch (no stage 1: the
#    stage-1 student above uses LayerNorm, and stage 2 loads stage 1 only into the same architecture)
$SB train distill --data sst-2 --teacher $R/teacher/model --student $S --student-set norm=batch \
    --set epochs=1 --set augment=null --set emb_rows=batch --out $R/student-batchnorm
