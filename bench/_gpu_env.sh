# Sourced by the bench/gpu_*.sh scripts after their flags are parsed: the repository root as the working
# folder and on PYTHONPATH (the GPU machine has no fertune install), and OUT_DIR=$OUT/<name> (or
# bench/results/<name>) created for the results.
gpu_env() {
  OUT_DIR="${OUT:-bench/results}/$1"
  mkdir -p "$OUT_DIR"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
}
