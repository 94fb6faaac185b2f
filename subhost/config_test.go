package subhost

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ovpkg/ovpkg/config"
)

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig("/etc/sub/web.conf", []byte("# overlay-boot\nBASE=../srv/web\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"name": "web", "base": "/etc/srv/web", "lower": "/", "upper": "/etc/srv/web/root",
		"work": "/etc/srv/web/work", "live": "/etc/srv/web/live", "log": "/tmp/overlay-web.log", "ram": "50M",
		"start": "networking ssh"}
	got := map[string]string{"name": c.Name, "base": c.Base, "lower": c.Lower, "upper": c.Upper, "work": c.Work,
		"live": c.Live, "log": c.Log, "ram": c.RAMSize, "start": strings.Join(c.Start, " ")}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if c.Stop != DefaultStopTimeout || len(c.Cables) != 0 || c.Memory != 0 {
		t.Errorf("unexpected %+v", c)
	}
}

func TestConfigValues(t *testing.T) {
	src := `NAME=box
BASE=/srv/box
UPPER=up
START="a b"
RAM_SIZE=none
CABLES=br0=02:00:5e:00:53:01 =.7 br1=.8 =  lan=
SHARE=/home
SHARE=/srv/data:/data
MEMORY=256M
CPU=50%
PIDS=100
STOP_TIMEOUT=3
`
	c, err := ParseConfig("/x/y.conf", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "box" || c.Upper != "/srv/box/up" || strings.Join(c.Start, ",") != "a,b" || c.RAMSize != "" {
		t.Errorf("%+v", c)
	}
	if len(c.Cables) != 3 || c.Cables[0].MAC.String() != "02:00:5e:00:53:01" || len(c.Cables[0].Vlans) != 2 ||
		c.Cables[0].Vlans[1] != (Vlan{ID: 8, Bridge: "br1"}) || c.Cables[1].MAC != nil || c.Cables[2].Bridge != "lan" {
		t.Errorf("cables %+v", c.Cables)
	}
	if c.Cables[2].Host("box") != "box2" || c.Cables[2].Sub() != "eth2" {
		t.Error("names")
	}
	if len(c.Shares) != 2 || c.Shares[0] != (Share{"/home", "/home"}) || c.Shares[1] != (Share{"/srv/data", "/data"}) {
		t.Errorf("shares %+v", c.Shares)
	}
	if c.Memory != 256<<20 || c.CPU != 50000 || c.Pids != 100 || c.Stop != 3*time.Second {
		t.Errorf("limits %d %d %d %v", c.Memory, c.CPU, c.Pids, c.Stop)
	}
	if c.Lines["SHARE"] != 8 || c.Lines["CABLES"] != 6 {
		t.Errorf("lines %v", c.Lines)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"BASE=/b\nNAME=abcdefghijklm\n", "x.conf:2: NAME=abcdefghijklm: 13 characters"},
		{"BASE=/b\nNAME=a/b\n", "x.conf:2: NAME=a/b: '/' is not allowed"},
		{"BASE=/b\njunk\n", `x.conf:2: "junk" is not a KEY=VALUE assignment`},
		{"NAME=a\n", "x.conf: BASE is not set"},
		{"BASE=/b\nCABLES=br0\n", `x.conf:2: CABLES: "br0": want BRIDGE=MAC`},
		{"BASE=/b\nCABLES==.5\n", "a VLAN entry needs a cable before it"},
		{"BASE=/b\nCABLES== =.5000\n", "VLAN id \"5000\" is not 1..4094"},
		{"BASE=/b\nCABLES=br0=01:00:5e:00:00:01\n", "multicast or zero address"},
		{"BASE=/b\nCABLES=br0=zz\n", `"zz" is not a MAC address`},
		{"BASE=/b\nSHARE=/a:rel\n", "x.conf:2: SHARE=/a:rel: want DIR or HOSTDIR:SUBHOSTDIR"},
		{"BASE=/b\nRAM_SIZE=lots\n", "x.conf:2: RAM_SIZE=lots"},
		{"BASE=/b\nCPU=0\n", "x.conf:2: CPU=0"},
		{"BASE=/b\nPIDS=-1\n", "x.conf:2: PIDS=-1"},
		{"BASE=/b\nSTART=../x\n", `START: "../x" is not a service name`},
		{"BASE=/b\nUPPER=!exit 3\n", `x.conf:2: UPPER helper "exit 3" failed`},
	} {
		_, err := ParseConfig("/c/x.conf", []byte(tc.src), Options{Action: ActionStart})
		var ce *config.Error
		if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestConfigHelpersAndWarnings(t *testing.T) {
	src := "BASE=/b\nUPPER=!echo /u/$ACTION; echo second\nFOO=1\nSTART=a\nSTART=b\n"
	dir := t.TempDir()
	c, err := ParseConfig(dir+"/x.conf", []byte(src), Options{Action: ActionStop})
	if err != nil {
		t.Fatal(err)
	}
	if c.Upper != "/u/overlay-stop" || !c.Helpers["UPPER"] || strings.Join(c.Start, " ") != "b" {
		t.Errorf("%+v", c)
	}
	if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0].Error(), "x.conf:3: unknown key FOO") ||
		!strings.Contains(c.Warnings[1].Error(), "x.conf:5: START is set again (line 4)") {
		t.Errorf("warnings %v", c.Warnings)
	}
	// Without an action helpers are not run.
	c, err = ParseConfig(dir+"/x.conf", []byte(src), Options{})
	if err != nil || c.Upper != "/b/root" || c.HelpersRun {
		t.Errorf("%v %+v", err, c)
	}
}
