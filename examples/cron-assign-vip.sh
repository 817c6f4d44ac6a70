#!/usr/bin/env bash
# Give the `vip` status to every customer in a CSV export, unattended (from cron).
#
#   crontab -e
#   # m h dom mon dow  command
#   15 2 * * *  OMNEO_TENANT=acme OMNEO_TOKEN_FILE=$HOME/.config/omneo-status/token $HOME/bin/cron-assign-vip.sh /data/exports/vip-customers.csv
#
# Settings, all from the environment:
#   OMNEO_TENANT or OMNEO_BASE_URL   the tenant (or OMNEO_PROFILE with a config file)
#   OMNEO_TOKEN_FILE or OMNEO_TOKEN  the API token; this script never prints it
#   OMNEO_STATE_DIR                  the journal, reports and locks (default: the user state dir)
#   CRON_HANDLE                      the status handle to assign (default: vip)
#   CRON_LOG_DIR                     the log and the JSON summaries (default: ~/omneo-status-logs)
#   OMNEO_STATUS_BIN                 the omneo-status command (default: the one on PATH)
#
# What it leaves in CRON_LOG_DIR:
#   assign-HANDLE.jsonl              every stage and failure of every run as JSON lines
#                                    (--log-file), then one "cron" line saying what to do;
#                                    each line names its run (run_id), so overlapping runs
#                                    can be told apart
#   assign-HANDLE-STAMP.json         the --json document of that run: its summary (counts,
#                                    batches, report), or the error that stopped it
#   assign-HANDLE-last.json          the summary of the newest run that ended with one (exit
#                                    0, 3 or 5); an error document never replaces it
#   assign-HANDLE-last-any.json      the newest document of any kind (summary or error)
#   assign-HANDLE.stderr             the tool's messages to stderr, run after run
#
# Cron mails whatever a job prints: this script prints nothing when all went well, and a few
# lines (what happened, what to do, where to look) when someone should act.
#
# Exit status: the tool's own exit code (see "Exit codes" in the README).

set -u

csv="${1:-}"
if [ -z "$csv" ]; then
    echo "usage: $0 CSV_FILE" >&2
    exit 2
fi
handle="${CRON_HANDLE:-vip}"
log_dir="${CRON_LOG_DIR:-$HOME/omneo-status-logs}"
bin="${OMNEO_STATUS_BIN:-omneo-status}"

# cron runs with a short PATH: also look where pipx and `uv tool install` put commands.
PATH="$PATH:$HOME/.local/bin"
export PATH

umask 077 # the log and the summaries name customers: for this user only
mkdir -p "$log_dir" || exit 1

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
log="$log_dir/assign-$handle.jsonl"
document="$log_dir/assign-$handle-$stamp.json"
last="$log_dir/assign-$handle-last.json"
last_any="$log_dir/assign-$handle-last-any.json"
stderr_log="$log_dir/assign-$handle.stderr"
this_stderr="$log_dir/.assign-$handle-$stamp.stderr"

# --yes: nobody is there to answer (off a terminal the tool never asks, and says so unless
# told); --quiet: errors and warnings only, no progress lines; --json: one document on
# stdout, saved below. No -v: nothing about requests is logged.
"$bin" assign "$handle" "$csv" --yes --quiet --json --log-file "$log" \
    >"$document" 2>"$this_stderr"
code=$?

{
    echo "== $stamp exit $code"
    cat "$this_stderr"
} >>"$stderr_log"

# Replace a file in one step, so that a reader never sees half of it.
keep() {
    cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"
}

run_id=null
if [ -s "$document" ]; then
    keep "$document" "$last_any"
    # An error document has a top-level "error" key; a summary has none (and is kept as the
    # last good one).
    if ! grep -q '^  "error": ' "$document"; then
        keep "$document" "$last"
    fi
    # The run this invocation worked on. An exit-4 document names the run holding the lock,
    # which is another process's: this one worked on none, as its own log line says.
    found="$(sed -n 's/^  "run_id": "\([^"]*\)",\{0,1\}$/\1/p' "$document")"
    if [ -n "$found" ] && [ "$code" -ne 4 ]; then
        run_id="\"$found\""
    fi
else
    rm -f "$document" # no document at all: the command was not found, or was killed
    document="(none)"
fi

# The tool's time stamp: UTC to the millisecond, ending in Z (a date without %N, as on BSD
# and macOS, gives .000).
now() {
    t="$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)"
    case $t in
        *N*) t="$(date -u +%Y-%m-%dT%H:%M:%S).000Z" ;;
    esac
    printf '%s' "$t"
}

# One JSON line in the same log as the tool's events, in its shape. The messages below are
# fixed text, and a run id is letters, digits and hyphens, so they need no JSON escaping.
note() {
    printf '{"ts": "%s", "event": "cron", "run_id": %s, "exit_code": %d, "message": "%s"}\n' \
        "$(now)" "$run_id" "$code" "$1" >>"$log"
}

alert=yes
case $code in
    0)
        note "finished; no row failed"
        alert=no
        ;;
    1)
        note "fatal error (API unreachable, token refused...): check the network and the token, the next run resumes this one"
        ;;
    2)
        note "usage, configuration or input error: nothing was written; fix the command, the token setting or the CSV"
        ;;
    3)
        note "rows failed, verification found a problem, or --max-unmatched stopped the run: read the report"
        ;;
    4)
        note "another run of this job still holds its lock: this run did nothing; the last summary is kept"
        alert=no
        ;;
    5)
        note "gave up waiting for batches: they were accepted; the next run (or omneo-status resume) picks them up"
        ;;
    130)
        note "interrupted (SIGTERM or Ctrl-C): the journal is saved; the next run resumes it"
        ;;
    *)
        note "unexpected exit code"
        ;;
esac

if [ "$alert" = yes ]; then
    {
        echo "omneo-status assign $handle $csv: exit $code"
        tail -n 1 "$log"
        echo "This run's document: $document"
        echo "Last summary of a run that ended: $last"
        echo "Log: $log"
        echo "What the tool said:"
        cat "$this_stderr"
    } >&2
fi
rm -f "$this_stderr"
exit "$code"
