// Package faults is tether's fault suite: tests that run the real binary in
// a network namespace of its own, with clients and members in namespaces of
// theirs joined by veth pairs, and inject the faults real networks produce
// (black holes, SYN drops, resets, random loss, restarts, exhaustion) with
// iptables while load runs. Each test states the fault, the load, the bound
// and what "nothing lost" means for it.
//
// The tests need root (namespaces, iptables). Without it they skip, except
// under CI=true, where they fail. Every address they use lies inside the
// namespaces they create (198.18.0.0/15, RFC 2544's benchmarking range), and
// they remove those namespaces when they end.
//
// Run only them: go test -count=1 -v ./cmd/tether/faults/
package faults
