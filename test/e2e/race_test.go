//go:build e2e && race

package e2e

// raceEnabled: the suite runs with -race, so agimo is built with -race too.
const raceEnabled = true
