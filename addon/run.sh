#!/command/with-contenv bashio
# shellcheck shell=bash disable=SC2034 # the variables are exported by set -a
# s6 longrun "fastkokoro": the add-on's options -> FASTKOKORO_* variables, then the daemon.
# Variables, not flags: config.py reads them with the same names and checks, and an empty
# value counts as unset. Discovery is the separate "discovery" oneshot (rootfs/), which
# waits until this server answers a Wyoming describe.
set -e

# engine.lexicon from the lexicon option ({word, phonemes, language?} objects on stdin, as
# bashio prints a list of objects): a file (JSON is YAML), the language defaulting to $1.
# An empty list writes nothing and prints nothing: no lexicon.
lexicon_file() {
    local entries
    entries=$(jq -s 'map(select(. != null))')
    [[ "${entries}" == "[]" ]] && return 0
    jq --arg lang "$1" 'reduce .[] as $e ({}; .[$e.language // $lang][$e.word] = $e.phonemes)' \
        <<<"${entries}" >"${LEXICON_FILE}"
    echo "${LEXICON_FILE}"
}
LEXICON_FILE=${LEXICON_FILE:-/data/lexicon.yaml}

# bashio prints a list's items one JSON value a line: a JSON list, or nothing when there are
# none (an options.json from before the option existed has null there)
json_list() {
    local entries
    entries=$(jq -sc 'map(select(. != null))')
    [[ "${entries}" == "[]" ]] || echo "${entries}"
}

# --- options: one assignment each (tests/unit/test_addon.py checks that every option is here
# and that every variable is a config key). set -a exports every assignment. ---
set -a
FASTKOKORO_ENGINE_DEFAULT_VOICE=$(bashio::config 'voice')
FASTKOKORO_ENGINE_LANGUAGES=$(bashio::config 'languages' | paste -sd, -)
FASTKOKORO_ENGINE_SEGMENTATION_STRATEGY=$(bashio::config 'strategy')
FASTKOKORO_ENGINE_RUNTIME_INTRA_OP_THREADS=$(bashio::config 'threads')
FASTKOKORO_ENGINE_MODEL_SOURCE=$(bashio::config 'model_source')
FASTKOKORO_WYOMING_ZEROCONF=$(bashio::config 'zeroconf')
FASTKOKORO_LOG_LEVEL=$(bashio::config 'log_level' | tr '[:lower:]' '[:upper:]')
FASTKOKORO_ENGINE_LEXICON=$(bashio::config 'lexicon' | lexicon_file "${FASTKOKORO_ENGINE_LANGUAGES%%,*}")
FASTKOKORO_ENGINE_VOICES_PRESETS=$(bashio::config 'presets' | json_list)
if bashio::config.has_value 'api_key'; then
    FASTKOKORO_HTTP_API_KEY=$(bashio::config 'api_key')
fi

# --- fixed in the add-on ---
# Ports inside the container never change: the host side is set under Network, and
# discovery, ports and the healthcheck all name these two.
FASTKOKORO_WYOMING_PORT=10210
FASTKOKORO_HTTP_PORT=8880
# /data survives updates and restarts; backups skip the model files (backup_exclude).
FASTKOKORO_ENGINE_MODEL_CACHE_DIR=/data
HF_HOME=/data/hf
# HA OS gives add-ons no NVIDIA GPU: the image has the CPU onnxruntime only.
FASTKOKORO_ENGINE_RUNTIME_PROVIDERS=cpu
set +a

bashio::log.info "Starting: voice ${FASTKOKORO_ENGINE_DEFAULT_VOICE}," \
    "languages ${FASTKOKORO_ENGINE_LANGUAGES}, model from ${FASTKOKORO_ENGINE_MODEL_SOURCE}"
exec fastkokoro-wyoming serve
