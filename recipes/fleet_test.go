package recipes

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

const fleetRecipeHead = `recipe "web" {
  version = "1.0.0"
  stages  = ["dev", "staging", "prod"]
}
machine_image "web" {
  region     = "us-east-1"
  source_ami = "ami-0123456789abcdef0"
}
stage "prod" {
  regions = ["eu-west-1"]
}
`

func intp(n int) *int { return &n }

// TestFleetDecodesEveryArgument loads a fleet block with every argument
// and one with none, and checks what they evaluate to and the defaults.
func TestFleetDecodesEveryArgument(t *testing.T) {
	src := fleetRecipeHead + `fleet "prod" {
  image              = "web"
  region             = "eu-west-1"
  instance_type      = "t3.small"
  min_size           = 2
  max_size           = 6
  desired_capacity   = 3
  subnets            = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  security_groups    = ["sg-0123456789abcdef0"]
  instance_profile   = "web"
  user_data_file     = "fleet/cloud-init.yaml"
  target_groups      = ["arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web/0123456789abcdef"]
  alarms             = ["web-5xx", "web-latency"]
  health_check_type  = "EC2"
  health_check_grace = "120s"
  strategy           = "highlander"
  keep_disabled      = 2
  drain              = "5m"
  healthy_timeout    = "10m"
  tags               = { team = "web" }
}
fleet "dev" {
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "fleet/cloud-init.yaml": "#cloud-config\n"})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	prod := r.Fleet("prod")
	if prod == nil {
		t.Fatal("no fleet for prod")
	}
	got := *prod
	got.DeclRange, got.Ranges = hclRangeZero, nil
	want := Fleet{
		Stage: "prod", Image: "web", Region: "eu-west-1", InstanceType: "t3.small",
		MinSize: intp(2), MaxSize: intp(6), DesiredCapacity: intp(3),
		Subnets:         []string{"subnet-0123456789abcdef0", "subnet-0123456789abcdef1"},
		SecurityGroups:  []string{"sg-0123456789abcdef0"},
		InstanceProfile: "web", UserDataFile: "fleet/cloud-init.yaml", UserData: "#cloud-config\n",
		TargetGroups:     []string{"arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web/0123456789abcdef"},
		Alarms:           []string{"web-5xx", "web-latency"},
		HealthCheckType:  "EC2",
		HealthCheckGrace: 120 * time.Second, Strategy: StrategyHighlander, KeepDisabled: 2,
		Drain: 5 * time.Minute, HealthyTimeout: 10 * time.Minute, Tags: map[string]string{"team": "web"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("prod fleet:\n got %+v\nwant %+v", got, want)
	}
	if p, want := prod.Pos("strategy"), filepath.Join(dir, "r.bake.hcl")+":27:24"; p != want {
		t.Errorf("Pos(strategy) = %s, want %s", p, want)
	}

	dev := *r.Fleet("dev")
	dev.DeclRange, dev.Ranges = hclRangeZero, nil
	wantDev := Fleet{Stage: "dev", Image: "web", InstanceType: DefaultFleetInstanceType, HealthCheckType: HealthCheckEC2,
		HealthCheckGrace: DefaultHealthCheckGrace, Strategy: StrategyRedBlack, KeepDisabled: DefaultKeepDisabled, HealthyTimeout: DefaultHealthyTimeout}
	if !reflect.DeepEqual(dev, wantDev) {
		t.Errorf("dev fleet (defaults):\n got %+v\nwant %+v", dev, wantDev)
	}
	if r.Fleet("staging") != nil {
		t.Error("staging has no fleet block but Fleet returned one")
	}
}

// TestFleetHealthCheckTypeDefaultsToELBWithTargetGroups: a fleet behind a
// load balancer counts its health checks unless it says otherwise.
func TestFleetHealthCheckTypeDefaultsToELBWithTargetGroups(t *testing.T) {
	src := fleetRecipeHead + `fleet "prod" {
  region        = "eu-west-1"
  target_groups = ["arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/web/0123456789abcdef"]
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	r := mustLoad(t, filepath.Join(dir, "r.bake.hcl"), Options{})
	if got := r.Fleet("prod").HealthCheckType; got != HealthCheckELB {
		t.Errorf("HealthCheckType = %q, want ELB", got)
	}
}

// TestFleetDiagnostics: every mistake validate can find offline is
// reported at its line and column, in one pass.
func TestFleetDiagnostics(t *testing.T) {
	src := fleetRecipeHead + `fleet "qa" {
}
fleet "prod" {
  image             = "webb"
  region            = "us-west-2"
  instance_type     = "large"
  min_size          = 4
  max_size          = 2
  desired_capacity  = 3
  subnets           = ["subnet-1", "subnet-0123456789abcdef0", "subnet-0123456789abcdef0"]
  security_groups   = ["default"]
  target_groups     = ["web"]
  strategy          = "blue-green"
  health_check_type = "HTTP"
  drain             = "-1m"
  healthy_timeout   = "0s"
  keep_disabled     = -1
  tags              = { "bakery:stage" = "x" }
  user_data_file    = "nosuch.yaml"
  alarms            = ["web-5xx", "", "web-5xx"]
  subnet_ids        = []
}
fleet "prod" {
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	p := filepath.Join(dir, "r.bake.hcl")
	_, diags := NewLoader().Load(p, Options{})
	wantDiags(t, diags, p, []string{
		`12:7: fleet of unknown stage "qa"`,
		`15:23: unknown machine_image "webb"`,
		`17:23: invalid instance type "large"`,
		`19:23: max_size 2 is less than min_size 4`,
		`20:23: desired_capacity 3 is less than min_size 4`,
		`19:23: max_size 2 is less than desired_capacity 3`,
		`21:24: invalid subnet id "subnet-1"`,
		`21:64: duplicate subnet id "subnet-0123456789abcdef0"`,
		`22:24: invalid security group id "default"`,
		`23:24: invalid target group ARN "web"`,
		`24:23: invalid strategy "blue-green"`,
		`25:23: invalid health_check_type "HTTP"`,
		`26:23: invalid duration "-1m"`,
		`27:23: invalid duration "0s"`,
		`28:23: invalid keep_disabled -1`,
		`29:25: reserved tag key "bakery:stage"`,
		`30:23: no such file "nosuch.yaml"`,
		`31:35: invalid alarm name ""`,
		`31:39: duplicate alarm name "web-5xx"`,
		`32:3: Unsupported argument`,
		`34:1: duplicate fleet block "prod"`,
	})
}

// TestFleetRegionMustHoldTheStagesImage: a fleet in a region the stage's
// image is never copied to is refused offline, and one in the stage's
// region or the build region is not.
func TestFleetRegionMustHoldTheStagesImage(t *testing.T) {
	for _, tc := range []struct {
		stage, region string
		ok            bool
	}{
		{"prod", "eu-west-1", true},
		{"prod", "us-east-1", true},
		{"dev", "eu-west-1", false}, // prod's copy region, not dev's
		{"prod", "ap-south-1", false},
	} {
		src := fleetRecipeHead + `fleet "` + tc.stage + `" {
  region = "` + tc.region + `"
}
`
		dir := writeTree(t, map[string]string{"r.bake.hcl": src})
		p := filepath.Join(dir, "r.bake.hcl")
		_, diags := NewLoader().Load(p, Options{})
		if tc.ok {
			if diags.HasErrors() {
				t.Errorf("fleet %s in %s: %s", tc.stage, tc.region, diagText(diags))
			}
			continue
		}
		wantDiags(t, diags, p, []string{`13:12: the image of stage "` + tc.stage + `" is never in ` + tc.region})
	}
}

// TestFleetImageDefaultsOnlyToTheOnlyMachineImage: with no machine_image
// or several, a fleet must name its image.
func TestFleetImageDefaultsOnlyToTheOnlyMachineImage(t *testing.T) {
	none := `recipe "web" {
  version = "1.0.0"
  stages  = ["prod"]
}
container "c" {
  base = "scratch"
  layer {
    source      = "a"
    destination = "/a"
  }
}
fleet "prod" {
}
`
	two := fleetRecipeHead + `machine_image "api" {
  region     = "us-east-1"
  source_ami = "ami-0123456789abcdef0"
}
fleet "dev" {
}
fleet "staging" {
  image = "api"
}
`
	dir := writeTree(t, map[string]string{"none.bake.hcl": none, "two.bake.hcl": two, "a": "a"})
	p := filepath.Join(dir, "none.bake.hcl")
	_, diags := NewLoader().Load(p, Options{})
	wantDiags(t, diags, p, []string{`12:1: a fleet needs a machine_image`})
	p = filepath.Join(dir, "two.bake.hcl")
	_, diags = NewLoader().Load(p, Options{})
	wantDiags(t, diags, p, []string{`16:1: missing required argument "image"`})
}

// TestFleetSizes: the recipe's sizes win over the serving group's,
// --capacity wins over both and stretches the bounds, and desired stays
// within min and max.
func TestFleetSizes(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		f                      Fleet
		cur                    [3]int
		capacity               int
		wantMin, wantD, wantMx int
	}{
		{"first launch, nothing set", Fleet{}, [3]int{}, 0, 1, 1, 1},
		{"current group's sizes", Fleet{}, [3]int{2, 3, 5}, 0, 2, 3, 5},
		{"recipe wins", Fleet{MinSize: intp(1), DesiredCapacity: intp(2), MaxSize: intp(4)}, [3]int{2, 3, 5}, 0, 1, 2, 4},
		{"capacity wins and stretches max", Fleet{MinSize: intp(1), MaxSize: intp(4)}, [3]int{2, 3, 5}, 6, 1, 6, 6},
		{"capacity stretches min down", Fleet{MinSize: intp(3), MaxSize: intp(5)}, [3]int{}, 2, 2, 2, 5},
		{"current desired clamped to the recipe's max", Fleet{MaxSize: intp(2)}, [3]int{1, 3, 5}, 0, 1, 2, 2},
		{"current desired raised to the recipe's min", Fleet{MinSize: intp(4)}, [3]int{1, 2, 5}, 0, 4, 4, 5},
	} {
		mn, d, mx := tc.f.Sizes(tc.cur[0], tc.cur[1], tc.cur[2], tc.capacity)
		if mn != tc.wantMin || d != tc.wantD || mx != tc.wantMx {
			t.Errorf("%s: Sizes = %d/%d/%d, want %d/%d/%d", tc.name, mn, d, mx, tc.wantMin, tc.wantD, tc.wantMx)
		}
	}
}
