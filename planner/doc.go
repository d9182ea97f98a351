// Package planner computes safe Consul upgrade plans as pure functions: a
// cluster snapshot, a target version and a policy go in; findings, the
// stepping-stone path, the next step and the whole plan come out. It does no
// IO, reads no clock, logs nothing and prints nothing.
package planner
