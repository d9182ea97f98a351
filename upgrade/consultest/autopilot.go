package consultest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hashicorp/consul/api"
)

// autopilotIndex is the ModifyIndex of a new cluster's autopilot
// configuration: each write moves it on by one.
const autopilotIndex = 5

// autopilot is the cluster's autopilot configuration, made on first use
// with Consul's defaults (CleanupDeadServers true, LastContactThreshold
// 200ms, MaxTrailingLogs 250) and the stabilization time of the cluster.
// Callers hold c.mu.
func (c *Cluster) autopilot() *api.AutopilotConfiguration {
	if c.apConf == nil {
		ac := api.NewAutopilotConfiguration()
		ac.CreateIndex, ac.ModifyIndex = autopilotIndex, autopilotIndex
		c.apConf = &ac
	}
	c.apConf.ServerStabilizationTime = api.NewReadableDuration(c.stabilization)
	return c.apConf
}

// AutopilotConfig returns the autopilot configuration as
// /v1/operator/autopilot/configuration answers it (in the eras that have
// it, 0.8 and later).
func (c *Cluster) AutopilotConfig() api.AutopilotConfiguration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.autopilot()
}

// SetAutopilotConfig changes the autopilot configuration as an operator's
// `consul operator autopilot set-config` would: f edits it, and its
// ModifyIndex moves on, so a compare-and-set made at the index read before
// fails.
func (c *Cluster) SetAutopilotConfig(f func(*api.AutopilotConfiguration)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ac := c.autopilot()
	f(ac)
	c.stabilization = max(ac.ServerStabilizationTime.Duration(), 0)
	ac.ModifyIndex++
	c.apWrites = append(c.apWrites, *ac)
}

// AutopilotWrites returns every autopilot configuration written so far
// (by PUT /v1/operator/autopilot/configuration and SetAutopilotConfig), in
// order, as each write left it; a compare-and-set that failed wrote none.
func (c *Cluster) AutopilotWrites() []api.AutopilotConfiguration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]api.AutopilotConfiguration(nil), c.apWrites...)
}

// serveAutopilotConfig answers GET and PUT
// /v1/operator/autopilot/configuration as Consul does: a PUT replaces the
// configuration; with ?cas=<index> only when index is its ModifyIndex,
// answering true or false (without cas it answers true).
func (c *Cluster) serveAutopilotConfig(w http.ResponseWriter, r *http.Request) {
	ac := c.autopilot()
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, ac)
	case http.MethodPut:
		var in api.AutopilotConfiguration
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, fmt.Sprintf("Error parsing autopilot config: %v", err), http.StatusBadRequest)
			return
		}
		if s, ok := r.URL.Query()["cas"]; ok {
			cas, err := strconv.ParseUint(s[0], 10, 64)
			if err != nil {
				http.Error(w, fmt.Sprintf("Error parsing cas value: %v", err), http.StatusBadRequest)
				return
			}
			if cas != ac.ModifyIndex {
				writeJSON(w, http.StatusOK, false)
				return
			}
		}
		in.CreateIndex, in.ModifyIndex = ac.CreateIndex, ac.ModifyIndex+1
		*ac = in
		c.stabilization = max(in.ServerStabilizationTime.Duration(), 0)
		c.apWrites = append(c.apWrites, in)
		writeJSON(w, http.StatusOK, true)
	default:
		http.Error(w, "consultest: "+r.Method+" /v1/operator/autopilot/configuration is not simulated", http.StatusMethodNotAllowed)
	}
}
