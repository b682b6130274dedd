package main

import (
	"net"
	"testing"

	"hazardwatch/gateway/sim"
	"hazardwatch/internal/config"
	"hazardwatch/internal/model"
)

// TestListenOnHost: simulate --listen-host keeps every Modbus TCP device's
// configured port on the given host (what docker-compose.yml runs, with the
// gateways dialling simulator:PORT), and the simulator takes the mapping.
func TestListenOnHost(t *testing.T) {
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plant
	if m, err := listenOnHost(p, ""); m != nil || err != nil {
		t.Errorf(`listenOnHost(""): %v, %v; want nil, nil`, m, err)
	}
	m, err := listenOnHost(p, "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range p.Gateways {
		for _, d := range g.Devices {
			if d.Transport != model.ModbusTCP {
				continue
			}
			n++
			_, port, _ := net.SplitHostPort(d.Address)
			if got, want := m[g.ID+"/"+d.ID], "0.0.0.0:"+port; got != want {
				t.Errorf("%s/%s: %q, want %q", g.ID, d.ID, got, want)
			}
		}
	}
	if n == 0 || len(m) != n {
		t.Errorf("%d mappings for %d TCP devices", len(m), n)
	}
	if _, err := sim.New(p, nil, sim.Options{Listen: m}); err != nil {
		t.Errorf("the simulator refuses the mapping: %v", err)
	}

	bad := *p
	bad.Gateways = []model.Gateway{{ID: "gw", Devices: []model.Device{{ID: "d", Transport: model.ModbusTCP, Address: "no-port"}}}}
	if _, err := listenOnHost(&bad, "0.0.0.0"); err == nil {
		t.Error("an address without a port was accepted")
	}
}
