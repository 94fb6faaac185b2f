package rtnl

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ovpkg/ovpkg/internal/nstest"
)

// The tests that touch the kernel run in a child of the test binary with
// its own network and mount namespaces (never in the test process itself).
const childEnv = "RTNL_TEST_IN_NETNS"

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// inNetns re-runs the named test in fresh network and mount namespaces.
// It returns true in the child (which then runs the body).
func inNetns(t *testing.T) bool {
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	nstest.RequireRoot(t)
	nstest.Need(t, "ip")
	cmd := exec.Command(os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in a new network namespace: %v\n%s", err, out)
	}
	return false
}

func sh(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

type ipLink struct {
	Name    string `json:"ifname"`
	Master  string `json:"master"`
	Address string `json:"address"`
	Flags   []string
	Link    string `json:"link"`
	Info    struct {
		Kind string `json:"info_kind"`
		Data struct {
			ID int `json:"id"`
		} `json:"info_data"`
	} `json:"linkinfo"`
}

func ipLinks(t *testing.T, ns string) map[string]ipLink {
	t.Helper()
	cmd := "ip -d -j link show"
	if ns != "" {
		cmd = "ip -n " + ns + " -d -j link show"
	}
	var ls []ipLink
	if err := json.Unmarshal([]byte(sh(t, cmd)), &ls); err != nil {
		t.Fatal(err)
	}
	m := map[string]ipLink{}
	for _, l := range ls {
		m[l.Name] = l
	}
	return m
}

func TestCables(t *testing.T) {
	if !inNetns(t) {
		return
	}
	sh(t, "mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns && ip netns add sub && ip link add br0 type bridge")
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ns, err := os.Open("/run/netns/sub")
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := ParseMAC("02:00:5e:00:53:01")
	if err := c.AddVeth(Veth{Name: "sub0", Peer: "eth0", PeerMAC: &mac, PeerNS: int(ns.Fd())}); err != nil {
		t.Fatal(err)
	}
	err = c.AddVeth(Veth{Name: "sub0", Peer: "eth9", PeerNS: -1})
	var re *Error
	if !errors.Is(err, unix.EEXIST) || !errors.As(err, &re) {
		t.Fatalf("second veth sub0: %v, want EEXIST", err)
	}
	host, err := c.LinkByName("sub0")
	if err != nil {
		t.Fatal(err)
	}
	br, err := c.LinkByName("br0")
	if err != nil || br.Kind != "bridge" {
		t.Fatalf("br0: %+v %v", br, err)
	}
	if host.Kind != "veth" {
		t.Errorf("sub0 kind %q", host.Kind)
	}
	if err := c.SetMaster(host.Index, br.Index); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUp(host.Index, true); err != nil {
		t.Fatal(err)
	}
	// Kernels without 8021q (this test bed's) refuse VLAN links: the error
	// must say so; where they exist they are checked below.
	vlan := true
	if err := c.AddVlan("sub0.5", host.Index, 5); errors.Is(err, unix.EOPNOTSUPP) {
		vlan = false
		t.Logf("no VLAN support in this kernel: %v", err)
		if !strings.Contains(err.Error(), "VLAN 5") {
			t.Errorf("error does not name the VLAN: %v", err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	if _, err := c.LinkByName("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nosuch: %v", err)
	}
	in, err := DialNS("/run/netns/sub")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eth, err := in.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth.MAC != mac {
		t.Errorf("eth0 MAC %v, want %v", eth.MAC, mac)
	}
	if vlan {
		if err := in.AddVlan("eth0.5", eth.Index, 5); err != nil {
			t.Fatal(err)
		}
	}
	lo, err := in.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.SetUp(lo.Index, true); err != nil {
		t.Fatal(err)
	}
	// Checked with ip(8), independently.
	h := ipLinks(t, "")
	if h["sub0"].Master != "br0" || h["sub0"].Info.Kind != "veth" {
		t.Errorf("host side as ip sees it: %+v", h["sub0"])
	}
	s := ipLinks(t, "sub")
	if s["eth0"].Address != mac.String() {
		t.Errorf("subhost side as ip sees it: %+v", s["eth0"])
	}
	if vlan && (h["sub0.5"].Info.Kind != "vlan" || h["sub0.5"].Info.Data.ID != 5 || h["sub0.5"].Link != "sub0" || s["eth0.5"].Info.Data.ID != 5) {
		t.Errorf("VLANs as ip sees them: %+v %+v", h["sub0.5"], s["eth0.5"])
	}
	if !strings.Contains(strings.Join(s["lo"].Flags, ","), "UP") {
		t.Errorf("lo not up: %v", s["lo"].Flags)
	}
	if err := c.Delete("sub0"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("sub0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	if _, ok := ipLinks(t, "sub")["eth0"]; ok {
		t.Error("eth0 left after its peer was deleted")
	}
}

func TestParseMAC(t *testing.T) {
	for _, bad := range []string{"", "02:00", "zz:00:00:00:00:00", "02:00:5e:00:53:01:02", "020:0:5e:00:53:01"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
	m, err := ParseMAC("02-00-5E-00-53-0a")
	if err != nil || m.String() != "02:00:5e:00:53:0a" {
		t.Errorf("got %v %v", m, err)
	}
}
