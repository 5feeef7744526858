package proxy

import (
	"fmt"
	"strings"
	"testing"
)

// Every value of the http loop's and the relay's outcome types has a name
// of its own (they appear in debugging output and panics), and a value
// outside the set says which type it is.
func TestOutcomesHaveDistinctNames(t *testing.T) {
	for typ, values := range map[string][]fmt.Stringer{
		"connEntry":       {entryAccepted, entryReady, entryExpired, entryTunnelEnded, connEntry(99)},
		"loopOutcome":     {loopIdleEnd, loopBusyEnd, loopParked, loopTunneled, loopOutcome(99)},
		"awaitOutcome":    {awaitReady, awaitEnd, awaitParked, awaitOutcome(99)},
		"exchangeOutcome": {exNext, exEnd, exTunneled, exReplay, exchangeOutcome(99)},
		"pipeStep":        {stepRead, stepWait, stepParked, stepEnded, pipeStep(99)},
	} {
		seen := map[string]bool{}
		for i, v := range values {
			name := v.String()
			if name == "" || seen[name] || (i < len(values)-1 && strings.HasPrefix(name, typ+"(")) {
				t.Errorf("%s value %d: name %q empty, repeated or missing", typ, i, name)
			}
			seen[name] = true
		}
		if last := values[len(values)-1].String(); last != typ+"(99)" {
			t.Errorf("%s(99) = %q, want %q", typ, last, typ+"(99)")
		}
	}
}
