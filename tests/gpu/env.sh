# Sourced by the GPU scripts: CUDA's libraries from the machine's PyTorch
# venv, llmctl's store, the folder models are made and kept in ($work), and
# the card, printed first.
site=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))')
export LD_LIBRARY_PATH="$site/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LLMCTL_HOME=${LLMCTL_HOME:-$HOME/llmctl-store}
work=${WORK:-$HOME/llmctl-gpu}
mkdir -p "$work"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
