#!/usr/bin/env bash
# bench:demo-outer variants on a CUDA machine, one process per (variant, seed), all at once, then one
# merged JSON. Made for the device machine: bundle the project (../shared/gpu/bundle.sh), put the
# Twemoji package's emoji.json and 64 px images in .gpu/emoji.tar.xz, and run
#   bash .gpu/run.sh bash $PWD/bench/reference/demo-outer-gpu-sweep.sh $PWD/.gpu [deadline-s]
# with OUT set (the device sets it). JOBS lists label:seed pairs; a label picks the --set flags
# below (every label names both settings: the bench's default is the demo's v-cosine) (outer momentum 0.8 for vcosm8). 12 processes at once on an H100 (16 cores) took 313-329 s for
# 40 rounds each, scoring included (27 Nov; bench/results/demo-diffusion.json).
set -u
G=$1
DEADLINE=${2:-470}
JOBS=${JOBS:-"base:0 base:1 base:2 v:0 v:1 v:2 cosine:0 cosine:1 cosine:2 vcos:0 vcos:1 vcos:2"}
[ -f "$G/emoji.tar.xz" ] && tar -xJf "$G/emoji.tar.xz" -C "$PWD"
export COOP_TORCH_THREADS=1
R=/tmp/demo-outer-sweep
rm -rf "$R" && mkdir -p "$R"
start=$(date +%s)
for job in $JOBS; do
  v=${job%%:*} s=${job##*:} mom=0.9
  case $v in
    base) sets=(--set diffusion.prediction=epsilon --set diffusion.schedule=linear) ;;
    v) sets=(--set diffusion.prediction=v --set diffusion.schedule=linear) ;;
    cosine) sets=(--set diffusion.prediction=epsilon --set diffusion.schedule=cosine) ;;
    vcos) sets=(--set diffusion.prediction=v --set diffusion.schedule=cosine) ;;
    vcosd2) sets=(--set diffusion.prediction=v --set diffusion.schedule=cosine --set unet.classDropProb=0.2) ;;
    vcosm8) sets=(--set diffusion.prediction=v --set diffusion.schedule=cosine) mom=0.8 ;;
    *) echo "unknown label $v" >&2; exit 2 ;;
  esac
  timeout "$DEADLINE" node bench/demo-outer.bench.ts --backend torch --threads 1 --rounds "${ROUNDS:-40}" \
    --score-at "${SCORE_AT:-16,24,32}" --per-class "${PER_CLASS:-32}" --window "${WINDOW:-8}" \
    --autoencoder-steps "${AE_STEPS:-600}" --seeds "$s" --variants "0.7/$mom" "${sets[@]}" --label "$v" \
    --out "$R/$v-$s.json" > "$R/$v-$s.log" 2>&1 &
done
wait
echo "all done after $(($(date +%s) - start)) s"
R=$R node -e '
const fs = require("fs"); const R = process.env.R; const out = { rows: [], failed: [] }
for (const f of fs.readdirSync(R).sort()) {
  if (f.endsWith(".json")) { const d = JSON.parse(fs.readFileSync(`${R}/${f}`, "utf8")); out.settings = d.settings; out.machine = d.machine; out.rows.push(...d.rows) }
  else if (!fs.existsSync(`${R}/${f.replace(/\.log$/, ".json")}`)) out.failed.push({ job: f, tail: fs.readFileSync(`${R}/${f}`, "utf8").slice(-600) })
}
fs.writeFileSync(`${process.env.OUT}/sweep.json`, JSON.stringify(out, null, 1))
for (const r of out.rows) console.log(r.label, r.seed, r.averaged.classAccuracy.toFixed(3), r.averaged.frechetDistance.toFixed(2), r.early.map((e) => e.classAccuracy.toFixed(2)).join(" "))
for (const f of out.failed) console.log("FAILED", f.job, f.tail)
'
