#!/usr/bin/env bash
# Time-boxed fuzzing of every fuzz target (make fuzz; CI runs it after make test).
#
# `make test` already runs each target's committed seed corpus (testdata/fuzz) as an ordinary
# test. This explores beyond it for FUZZTIME per target. Go's fuzzing engine can end with
# "context deadline exceeded" on a loaded machine when its workers miss the time box: that is
# the engine, not a finding, so it is reported and the next target runs. A real finding is a
# failure that wrote a new crasher into testdata/fuzz: that fails this script, and the file is
# the reproducer (commit it with the fix, as a seed).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
status=0
for pkg in $($GO list ./...); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for f in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz $pkg $f"
    before=$(find "$dir/testdata/fuzz/$f" -type f 2>/dev/null | sort)
    out=$($GO test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1)
    rc=$?
    after=$(find "$dir/testdata/fuzz/$f" -type f 2>/dev/null | sort)
    if ((rc == 0)); then
      continue
    fi
    if [[ "$before" == "$after" ]] && grep -q 'context deadline exceeded' <<<"$out"; then
      echo "  (the fuzzing engine missed its time box on a loaded machine; no crasher written)"
      continue
    fi
    echo "$out"
    echo "FAIL: $pkg $f; new inputs: $(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')"
    status=1
  done
done
exit $status
