#!/usr/bin/env bash
# The paper's other five tasks (SST-2 is benchmarks/sst2.sh) at the budget this 2-core machine
# allows in one session: teacher one epoch, student (the SST-2 configuration, no stage 1) two
# epochs, no augmentation. Resumable like sst2.sh. Results: `python benchmarks/accuracy.py --runs runs/bench`.
set -euo pipefail
SB=${SB:-.venv/bin/spikebert}
R=${R:-runs/bench}
S=benchmarks/configs/student-sst2.json
for task in ${TASKS:-mr subj sst-5 chnsenti waimai}; do
    $SB train teacher --data $task --set epochs=1 --set lr=1e-4 --out $R/$task/teacher
    $SB train distill --data $task --teacher $R/$task/teacher/model --student $S \
        --set epochs=2 --set augment=null --set emb_rows=batch --out $R/$task/student
done
