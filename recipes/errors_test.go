package recipes

import (
	"path/filepath"
	"strings"
	"testing"
)

// okRecipe is a valid recipe block, lines 1-4 of most cases below.
const okRecipe = `recipe "r" {
  version = "1.0.0"
  stages  = ["dev"]
}
`

// okImage is a valid machine_image block that needs no input files.
// Cases about the recipe block, variables and locals end with it, after
// their own lines so that positions hold: a recipe must bake something.
const okImage = `machine_image "m" {
  source_ami = "ami-0123456789abcdef0"
}
`

// container returns a container block starting at line 5 (after
// okRecipe) whose line 6 is base = "scratch" and whose lines from 7 on are
// the given lines followed by a valid layer block (unless noLayer).
func container(lines ...string) string {
	return okRecipe + "container \"c\" {\n  base = \"scratch\"\n" + join(lines) + `  layer {
    source      = "app/"
    destination = "/app/"
  }
}
`
}

// layer returns okRecipe plus a container whose layer block (line 7)
// holds the given lines from line 8 on.
func layer(lines ...string) string {
	return okRecipe + "container \"c\" {\n  base = \"scratch\"\n  layer {\n" + join(lines) + "  }\n}\n"
}

// image returns okRecipe plus a machine_image block "m" (line 5) whose
// line 6 is source_ami = "ami-0123456789abcdef0" and whose lines from 7
// on are the given lines.
func image(lines ...string) string {
	return imageBody(append([]string{`  source_ami = "ami-0123456789abcdef0"`}, lines...)...)
}

// imageBody returns okRecipe plus a machine_image block "m" (line 5)
// whose lines from 6 on are the given lines.
func imageBody(lines ...string) string {
	return okRecipe + "machine_image \"m\" {\n" + join(lines) + "}\n"
}

// provision returns image() with a provision "typ" block at line 7 whose
// lines from 8 on are the given lines.
func provision(typ string, lines ...string) string {
	return image(append(append([]string{`  provision "` + typ + `" {`}, lines...), "  }")...)
}

// stagedRecipe is a valid recipe block with three stages, lines 1-4.
const stagedRecipe = `recipe "r" {
  version = "1.0.0"
  stages  = ["dev", "staging", "prod"]
}
`

// stagedImage is a valid machine_image block (lines 5-8 after
// stagedRecipe) encrypted with a customer-managed key, so that stages may
// share it.
const stagedImage = `machine_image "m" {
  source_ami = "ami-0123456789abcdef0"
  kms_key_id = "alias/k"
}
`

// stage returns stagedRecipe and stagedImage plus a stage "name" block at
// line 9 whose lines from 10 on are the given lines.
func stage(name string, lines ...string) string {
	return stagedRecipe + stagedImage + "stage \"" + name + "\" {\n" + join(lines) + "}\n"
}

// gate returns stage(name) holding a gate block at line 10 whose lines
// from 11 on are the given lines.
func gate(name string, lines ...string) string {
	return stage(name, append(append([]string{"  gate {"}, lines...), "  }")...)
}

func join(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestLoadErrors(t *testing.T) {
	// Every case's directory holds app/hello (so "app/" is a directory),
	// the machine_image inputs files/app.conf (so "files/" is a directory)
	// and scripts/setup.sh, besides the recipe r.bake.hcl and the case's
	// own files.
	type tc struct {
		name  string
		src   string
		files map[string]string
		opts  func(dir string) Options

		// The diagnostic expected: its Summary contains summary, and its
		// Subject starts in file (a base name) at line:col.
		summary   string
		detail    string // optional: a phrase of the Detail
		file      string // default r.bake.hcl
		line, col int
		// count, when not zero, is the exact number of diagnostics:
		// errors must not cascade.
		count int
	}
	cases := []tc{
		// Syntax and schema.
		{name: "malformed HCL", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"\n}\n",
			summary: "Missing item separator", line: 4, col: 1, count: 1},
		{name: "unknown block", src: okRecipe + "builder \"docker\" {}\n" + okImage,
			summary: "Unsupported block type", line: 5, col: 1, count: 1},
		{name: "unknown attribute", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n  owner   = \"me\"\n}\n" + okImage,
			summary: "Unsupported argument", line: 4, col: 3, count: 1},
		{name: "unknown attribute in layer", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    owner       = "me"`),
			summary: "Unsupported argument", line: 10, col: 5, count: 1},
		{name: "missing recipe block", src: "variable \"x\" {\n  default = \"y\"\n}\n",
			summary: "missing recipe block", line: 1, col: 1, count: 1},
		{name: "recipe block without a name", src: "recipe {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n}\n",
			summary: "Missing name for recipe", line: 1, col: 8, count: 1},
		{name: "two recipe blocks", src: okRecipe + strings.Replace(okRecipe, `"r"`, `"s"`, 1) + okImage,
			summary: "duplicate recipe block", detail: "r.bake.hcl:1:1", line: 5, col: 1, count: 1},

		// The recipe block.
		{name: "missing version", src: "recipe \"r\" {\n  stages = [\"dev\"]\n}\n" + okImage,
			summary: `missing required argument "version"`, line: 1, col: 1, count: 1},
		{name: "missing stages", src: "recipe \"r\" {\n  version = \"1.0.0\"\n}\n" + okImage,
			summary: `missing required argument "stages"`, line: 1, col: 1, count: 1},
		{name: "version not a string", src: "recipe \"r\" {\n  version = 1.10\n  stages  = [\"dev\"]\n}\n" + okImage,
			summary: `invalid type for "version"`, detail: `quote it`, line: 2, col: 13, count: 1},
		{name: "empty version", src: "recipe \"r\" {\n  version = \"\"\n  stages  = [\"dev\"]\n}\n" + okImage,
			summary: "empty version", line: 2, col: 13, count: 1},
		{name: "version not a tag", src: "recipe \"r\" {\n  version = \"1.0 beta\"\n  stages  = [\"dev\"]\n}\n" + okImage,
			summary: "invalid version", line: 2, col: 13, count: 1},
		{name: "invalid recipe name", src: "recipe \"Web@1\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\"]\n}\n" + okImage,
			summary: "invalid recipe name", line: 1, col: 8, count: 1},
		{name: "empty stages", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = []\n}\n" + okImage,
			summary: "empty stages", line: 3, col: 13, count: 1},
		{name: "stages not a list", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = \"dev\"\n}\n" + okImage,
			summary: `invalid type for "stages"`, detail: "Expected a list of strings", line: 3, col: 13, count: 1},
		{name: "duplicate stage", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\", \"prod\", \"dev\"]\n}\n" + okImage,
			summary: `duplicate stage "dev"`, detail: "r.bake.hcl:3:14", line: 3, col: 29, count: 1},
		{name: "invalid stage name", src: "recipe \"r\" {\n  version = \"1.0.0\"\n  stages  = [\"dev\", \"Prod\"]\n}\n" + okImage,
			summary: `invalid stage name "Prod"`, line: 3, col: 21, count: 1},

		// The container block.
		{name: "duplicate container label", src: container() + "container \"c\" {\n  base = \"scratch\"\n  layer {\n    source      = \"app/\"\n    destination = \"/\"\n  }\n}\n",
			summary: `duplicate container block "c"`, detail: "r.bake.hcl:5:1", line: 12, col: 1, count: 1},
		{name: "invalid container name", src: strings.Replace(container(), `container "c"`, `container "Web_"`, 1),
			summary: `invalid container name "Web_"`, line: 5, col: 11, count: 1},
		{name: "missing base", src: okRecipe + "container \"c\" {\n  layer {\n    source      = \"app/\"\n    destination = \"/app/\"\n  }\n}\n",
			summary: `missing required argument "base"`, line: 5, col: 1, count: 1},
		{name: "missing layer", src: okRecipe + "container \"c\" {\n  base = \"scratch\"\n}\n",
			summary: "missing layer block", line: 5, col: 1, count: 1},
		{name: "invalid base reference", src: strings.Replace(container(), `"scratch"`, `"Not A Ref!"`, 1),
			summary: "invalid base image reference", line: 6, col: 10, count: 1},
		{name: "missing OCI layout", src: strings.Replace(container(), `"scratch"`, `"./nolayout"`, 1),
			summary: `no such OCI layout "./nolayout"`, detail: "relative to", line: 6, col: 10, count: 1},
		{name: "directory that is not an OCI layout", src: strings.Replace(container(), `"scratch"`, `"oci:./app:v1"`, 1),
			summary: `"./app" is not an OCI image layout`, detail: "no oci-layout file", line: 6, col: 10, count: 1},
		{name: "invalid repository", src: container(`  repository = "127.0.0.1:5000/Team/hello"`),
			summary: "invalid repository", line: 7, col: 16, count: 1},
		{name: "entrypoint not a list", src: container(`  entrypoint = "/app/hello"`),
			summary: `invalid type for "entrypoint"`, detail: "Expected a list of strings", line: 7, col: 16, count: 1},
		{name: "env not a map", src: container(`  env = ["A=b"]`),
			summary: `invalid type for "env"`, detail: "Expected a map of strings", line: 7, col: 9, count: 1},
		{name: "env value not a string", src: container(`  env = { A = "b", B = ["c"] }`),
			summary: `invalid type for "env"`, detail: `the value of "B"`, line: 7, col: 24, count: 1},
		{name: "env name with =", src: container(`  env = { "A=B" = "x" }`),
			summary: `invalid environment variable name "A=B"`, line: 7, col: 11, count: 1},
		{name: "base layout that is a file", src: strings.Replace(container(), `"scratch"`, `"./app/hello"`, 1),
			summary: `OCI layout "./app/hello" is not a directory`, line: 6, col: 10, count: 1},
		{name: "relative workdir", src: container(`  workdir = "app"`),
			summary: "workdir must be an absolute path", line: 7, col: 13, count: 1},
		{name: "bad port", src: container(`  exposed_ports = ["8080", "70000"]`),
			summary: `invalid exposed port "70000"`, line: 7, col: 28, count: 1},
		{name: "bad port protocol", src: container(`  exposed_ports = [53, "53/icmp"]`),
			summary: `invalid exposed port "53/icmp"`, line: 7, col: 24, count: 1},
		{name: "bad platform", src: container(`  platforms = ["linux/amd64", "linux"]`),
			summary: `invalid platform "linux"`, line: 7, col: 31, count: 1},
		{name: "duplicate platform", src: container(`  platforms = ["linux/amd64", "linux/amd64"]`),
			summary: `duplicate platform "linux/amd64"`, line: 7, col: 31, count: 1},

		// The layer block.
		{name: "missing source", src: layer(`    destination = "/app/"`),
			summary: `missing required argument "source"`, line: 7, col: 3, count: 1},
		{name: "missing destination", src: layer(`    source = "app/"`),
			summary: `missing required argument "destination"`, line: 7, col: 3, count: 1},
		{name: "missing source file", src: layer(`    source      = "missing.txt"`, `    destination = "/app/"`),
			summary: `no such file or directory "missing.txt"`, detail: "paths are relative to", line: 8, col: 19, count: 1},
		{name: "directory source without slash", src: layer(`    source      = "app"`, `    destination = "/app/"`),
			summary: `directory source "app" must end with "/"`, detail: `write source = "app/"`, line: 8, col: 19, count: 1},
		{name: "file source with slash", src: layer(`    source      = "app/hello/"`, `    destination = "/app/"`),
			summary: `layer source "app/hello/" is not a directory`, line: 8, col: 19, count: 1},
		{name: "relative destination", src: layer(`    source      = "app/"`, `    destination = "app/"`),
			summary: "destination must be an absolute path", line: 9, col: 19, count: 1},
		{name: "bad mode string", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    mode        = "0999"`),
			summary: "invalid mode", line: 10, col: 19, count: 1},
		{name: "mode out of range", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    mode        = 17777`),
			summary: "invalid mode", line: 10, col: 19, count: 1},
		{name: "mode of wrong type", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    mode        = true`),
			summary: `invalid type for "mode"`, line: 10, col: 19, count: 1},
		{name: "negative uid", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    uid         = -1`),
			summary: "invalid uid", line: 10, col: 19, count: 1},
		{name: "fractional gid", src: layer(`    source      = "app/"`, `    destination = "/app/"`, `    gid         = 1.5`),
			summary: "invalid gid", line: 10, col: 19, count: 1},

		// The machine_image block.
		{name: "recipe without an artifact block", src: okRecipe,
			summary: "a recipe needs at least one container or machine_image block", detail: "machine_image", line: 1, col: 1, count: 1},
		{name: "duplicate machine_image label", src: image() + "machine_image \"m\" {\n  source_ami = \"ami-0123456789abcdef0\"\n}\n",
			summary: `duplicate machine_image block "m"`, detail: "r.bake.hcl:5:1", line: 8, col: 1, count: 1},
		{name: "invalid machine_image name", src: strings.Replace(image(), `machine_image "m"`, `machine_image "Web_"`, 1),
			summary: `invalid machine_image name "Web_"`, line: 5, col: 15, count: 1},
		{name: "unknown attribute in machine_image", src: image(`  ssh_user = "admin"`),
			summary: "Unsupported argument", line: 7, col: 3, count: 1},
		{name: "two source forms at once", src: imageBody(`  source_ami     = "ami-0123456789abcdef0"`, `  source_ami_ssm = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"`),
			summary: "source_ami_ssm conflicts with source_ami", detail: "r.bake.hcl:6:20", line: 7, col: 20, count: 1},
		{name: "source_ami_filter with source_ami", src: imageBody(`  source_ami = "ami-0123456789abcdef0"`, `  source_ami_filter {`, `    owners = ["amazon"]`, `  }`),
			summary: "source_ami_filter conflicts with source_ami", detail: "exactly one of source_ami, source_ami_filter and source_ami_ssm", line: 7, col: 3, count: 1},
		{name: "two source_ami_filter blocks", src: imageBody(`  source_ami_filter {`, `    owners = ["amazon"]`, `  }`, `  source_ami_filter {`, `    owners = ["self"]`, `  }`),
			summary: "duplicate source_ami_filter block", detail: "r.bake.hcl:6:3", line: 9, col: 3, count: 1},
		{name: "no source form", src: imageBody(`  instance_type = "t3.micro"`),
			summary: "missing source AMI", detail: "source_ami_filter", line: 5, col: 1, count: 1},
		{name: "bad ami id", src: imageBody(`  source_ami = "ami-12345"`),
			summary: `invalid AMI id "ami-12345"`, detail: "8 or 17 hexadecimal digits", line: 6, col: 16, count: 1},
		{name: "bad SSM parameter path", src: imageBody(`  source_ami_ssm = "aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"`),
			summary: "invalid SSM parameter path", detail: `starting with "/"`, line: 6, col: 20, count: 1},
		{name: "filter without owners", src: imageBody(`  source_ami_filter {`, `    name = "al2023-ami-*-x86_64"`, `  }`),
			summary: `missing required argument "owners"`, detail: `owners = ["amazon"]`, line: 6, col: 3, count: 1},
		{name: "filter with empty owners", src: imageBody(`  source_ami_filter {`, `    owners = []`, `  }`),
			summary: "empty owners", line: 7, col: 14, count: 1},
		{name: "bad architecture", src: imageBody(`  source_ami_filter {`, `    owners       = ["amazon"]`, `    architecture = "amd64"`, `  }`),
			summary: `invalid architecture "amd64"`, detail: `Did you mean "arm64"? Use one of "x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac".`, line: 8, col: 20, count: 1},
		{name: "most_recent not a bool", src: imageBody(`  source_ami_filter {`, `    owners      = ["amazon"]`, `    most_recent = "yes"`, `  }`),
			summary: `invalid type for "most_recent"`, detail: "Expected true or false", line: 8, col: 19, count: 1},
		{name: "unknown attribute in source_ami_filter", src: imageBody(`  source_ami_filter {`, `    owners = ["amazon"]`, `    owner  = "amazon"`, `  }`),
			summary: "Unsupported argument", line: 8, col: 5, count: 1},
		{name: "bad region", src: image(`  region = "us-east"`),
			summary: `invalid region "us-east"`, detail: `"us-east-1"`, line: 7, col: 12, count: 1},
		{name: "bad copy region", src: image(`  regions = ["eu-west-1", "EU-WEST-2"]`),
			summary: `invalid region "EU-WEST-2"`, line: 7, col: 27, count: 1},
		{name: "duplicate region", src: image(`  regions = ["eu-west-1", "us-west-2", "eu-west-1"]`),
			summary: `duplicate region "eu-west-1"`, detail: "r.bake.hcl:7:14", line: 7, col: 40, count: 1},
		{name: "regions lists the build region", src: image(`  region  = "us-east-1"`, `  regions = ["eu-west-1", "us-east-1"]`),
			summary: `regions lists the build region "us-east-1"`, detail: "r.bake.hcl:7:13", line: 8, col: 27, count: 1},
		{name: "region_kms_key_ids for an unlisted region", src: image(`  regions            = ["eu-west-1"]`, `  region_kms_key_ids = { "eu-west-1" = "alias/a", "us-west-2" = "alias/b" }`),
			summary: `region "us-west-2" is not listed in regions`, detail: `add "us-west-2" to regions`, line: 8, col: 51, count: 1},
		{name: "bad account id", src: image(`  share_with = ["111122223333", "11112222333"]`, `  encrypted  = false`),
			summary: `invalid account id "11112222333"`, detail: "12 digits", line: 7, col: 33, count: 1},
		{name: "account id written as a number", src: image(`  share_with = [1111222233]`, `  encrypted  = false`),
			summary: `invalid account id "1111222233"`, line: 7, col: 17, count: 1},
		{name: "sharing an AMI encrypted with the default key", src: image(`  share_with = ["111122223333"]`),
			summary: "sharing an encrypted AMI needs a customer-managed KMS key", detail: "kms_key_id", line: 7, col: 16, count: 1},
		{name: "reserved tag key", src: image(`  tags = { team = "web", "bakery:recipe" = "x" }`),
			summary: `reserved tag key "bakery:recipe"`, detail: "written by bakery", line: 7, col: 26, count: 1},
		{name: "tag key reserved by AWS", src: image(`  tags = { "aws:cloudformation:stack-name" = "x" }`),
			summary: `reserved tag key "aws:cloudformation:stack-name"`, detail: "reserved by AWS", line: 7, col: 12, count: 1},
		{name: "bad instance type", src: image(`  instance_type = "t3micro"`),
			summary: `invalid instance type "t3micro"`, detail: `"t3.micro"`, line: 7, col: 19, count: 1},
		{name: "bad subnet id", src: image(`  subnet_id = "sn-0123abcd"`),
			summary: `invalid subnet id "sn-0123abcd"`, line: 7, col: 15, count: 1},
		{name: "bad ssh_port", src: image(`  ssh_port = 70000`),
			summary: "invalid ssh_port 70000", detail: "from 1 to 65535", line: 7, col: 14, count: 1},
		{name: "ssh_port of wrong type", src: image(`  ssh_port = "ssh"`),
			summary: `invalid type for "ssh_port"`, detail: "whole number", line: 7, col: 14, count: 1},
		{name: "bad duration", src: image(`  ssh_timeout = "5 minutes"`),
			summary: `invalid duration "5 minutes"`, detail: `"1h30m"`, line: 7, col: 17, count: 1},
		{name: "zero ssh_timeout", src: image(`  ssh_timeout = "0s"`),
			summary: `invalid duration "0s"`, detail: "more than zero", line: 7, col: 17, count: 1},
		{name: "duration as a number", src: image(`  ssh_timeout = 300`),
			summary: `invalid type for "ssh_timeout"`, detail: `ssh_timeout = "5m"`, line: 7, col: 17, count: 1},
		{name: "empty ssh_username", src: image(`  ssh_username = ""`),
			summary: "empty ssh_username", line: 7, col: 18, count: 1},
		{name: "missing ssh_private_key_file", src: image(`  ssh_private_key_file = "keys/id_ed25519"`),
			summary: `no such file "keys/id_ed25519"`, detail: "paths are relative to", line: 7, col: 26, count: 1},
		{name: "ssh_private_key_file that is a directory", src: image(`  ssh_private_key_file = "files"`),
			summary: `private key file "files" is a directory`, line: 7, col: 26, count: 1},
		{name: "bad CIDR", src: image(`  ssh_source_cidrs = ["203.0.113.7"]`),
			summary: `invalid CIDR "203.0.113.7"`, detail: `"203.0.113.7/32"`, line: 7, col: 23, count: 1},
		{name: "user_data and user_data_file together", src: image(`  user_data      = "#!/bin/sh"`, `  user_data_file = "files/app.conf"`),
			summary: "user_data_file conflicts with user_data", detail: "r.bake.hcl:7:20", line: 8, col: 20, count: 1},
		{name: "missing user_data_file", src: image(`  user_data_file = "cloud-init.yaml"`),
			summary: `no such file "cloud-init.yaml"`, line: 7, col: 20, count: 1},
		{name: "user data too large", src: image(`  user_data = join("", [for i in range(17) : format("%1024s", "")])`),
			summary: "user data too large (17408 bytes)", detail: "at most 16384 bytes", line: 7, col: 15, count: 1},
		{name: "bad volume type", src: image(`  root_volume_type = "gp4"`),
			summary: `invalid root_volume_type "gp4"`, detail: `"gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"`, line: 7, col: 22, count: 1},
		{name: "bad volume size", src: image(`  root_volume_size = 0`),
			summary: "invalid root_volume_size 0", detail: "from 1 to 16384", line: 7, col: 22, count: 1},
		{name: "encrypted not a bool", src: image(`  encrypted = "no"`),
			summary: `invalid type for "encrypted"`, line: 7, col: 15, count: 1},
		{name: "kms_key_id without encryption", src: image(`  encrypted  = false`, `  kms_key_id = "alias/x"`),
			summary: "kms_key_id needs encrypted = true", line: 8, col: 16, count: 1},
		{name: "region_kms_key_ids without encryption", src: image(`  encrypted          = false`, `  regions            = ["eu-west-1"]`, `  region_kms_key_ids = { "eu-west-1" = "alias/x" }`),
			summary: "region_kms_key_ids needs encrypted = true", line: 9, col: 24, count: 1},
		{name: "bad ami_name", src: image(`  ami_name = "web:1.0"`),
			summary: `invalid ami_name "web:1.0"`, detail: "formatdate", line: 7, col: 14, count: 1},
		{name: "ami_name too short", src: image(`  ami_name = "w"`),
			summary: `invalid ami_name "w"`, detail: "3 to 128", line: 7, col: 14, count: 1},

		// The provision blocks.
		{name: "unknown provision type", src: image(`  provision "ansible" {`, `  }`),
			summary: `unknown provisioner type "ansible"`, detail: `provision "file" (uploads a file or a directory) or provision "shell" (runs commands)`, line: 7, col: 13, count: 1},
		{name: "misspelt provision type", src: image(`  provision "shel" {`, `    inline = ["true"]`, `  }`),
			summary: `unknown provisioner type "shel"`, detail: `Did you mean "shell"?`, line: 7, col: 13, count: 1},
		{name: "provision without a type", src: image(`  provision {`, `  }`),
			summary: "Missing type for provision", line: 7, col: 13, count: 1},
		{name: "shell with both inline and script", src: provision("shell", `    inline = ["echo hi"]`, `    script = "scripts/setup.sh"`),
			summary: "script conflicts with inline", detail: "r.bake.hcl:8:14", line: 9, col: 14, count: 1},
		{name: "shell with neither inline nor script", src: provision("shell", `    env = { A = "b" }`),
			summary: "missing inline or script", detail: `inline = ["command", ...]`, line: 7, col: 3, count: 1},
		{name: "shell with empty inline", src: provision("shell", `    inline = []`),
			summary: "empty inline", line: 8, col: 14, count: 1},
		{name: "missing script", src: provision("shell", `    script = "scripts/nope.sh"`),
			summary: `no such file "scripts/nope.sh"`, detail: "paths are relative to", line: 8, col: 14, count: 1},
		{name: "bad env name", src: provision("shell", `    inline = ["env"]`, `    env    = { APP_ENV = "prod", "APP-MODE" = "x" }`),
			summary: `invalid environment variable name "APP-MODE"`, detail: `"APP_ENV"`, line: 9, col: 34, count: 1},
		{name: "expect_disconnect not a bool", src: provision("shell", `    inline            = ["sudo reboot"]`, `    expect_disconnect = "maybe"`),
			summary: `invalid type for "expect_disconnect"`, line: 9, col: 25, count: 1},
		{name: "negative pause_before", src: provision("shell", `    inline       = ["true"]`, `    pause_before = "-1s"`),
			summary: `invalid duration "-1s"`, detail: "not negative", line: 9, col: 20, count: 1},
		{name: "file provisioner missing source", src: provision("file", `    destination = "/tmp/x"`),
			summary: `missing required argument "source"`, line: 7, col: 3, count: 1},
		{name: "file provisioner missing destination", src: provision("file", `    source = "files/app.conf"`),
			summary: `missing required argument "destination"`, line: 7, col: 3, count: 1},
		{name: "file provisioner source that does not exist", src: provision("file", `    source      = "files/nope.conf"`, `    destination = "/tmp/"`),
			summary: `no such file or directory "files/nope.conf"`, line: 8, col: 19, count: 1},
		{name: "directory source without slash", src: provision("file", `    source      = "files"`, `    destination = "/tmp/files"`),
			summary: `directory source "files" must end with "/"`, detail: `write source = "files/"`, line: 8, col: 19, count: 1},
		{name: "file source with slash", src: provision("file", `    source      = "files/app.conf/"`, `    destination = "/tmp/"`),
			summary: `provisioner source "files/app.conf/" is not a directory`, line: 8, col: 19, count: 1},
		{name: "relative destination", src: provision("file", `    source      = "files/app.conf"`, `    destination = "tmp/app.conf"`),
			summary: "destination must be an absolute path", detail: `such as "/tmp/app.conf"`, line: 9, col: 19, count: 1},
		{name: "shell argument in a file provisioner", src: provision("file", `    source      = "files/app.conf"`, `    destination = "/tmp/app.conf"`, `    inline      = ["true"]`),
			summary: "Unsupported argument", line: 10, col: 5, count: 1},

		// Stage blocks.
		{name: "stage not in stages, with a suggestion", src: stage("stagin"),
			summary: `unknown stage "stagin"`, detail: `Did you mean "staging"? A stage block configures one of the recipe's stages, "dev", "staging", "prod"`, line: 9, col: 7, count: 1},
		{name: "stage not in stages", src: stage("qa", `  regions = ["eu-west-1"]`),
			summary: `unknown stage "qa"`, detail: `r.bake.hcl:3:13); rename the block, or add "qa" to stages`, line: 9, col: 7, count: 1},
		{name: "stage block before the recipe block", src: "stage \"prd\" {\n}\n" + stagedRecipe + stagedImage,
			summary: `unknown stage "prd"`, detail: `Did you mean "prod"?`, line: 1, col: 7, count: 1},
		{name: "stage blocks do not cascade when stages is missing", src: "recipe \"r\" {\n  version = \"1.0.0\"\n}\n" + okImage + "stage \"prod\" {\n}\n",
			summary: `missing required argument "stages"`, line: 1, col: 1, count: 1},
		{name: "stage without a name", src: stagedRecipe + stagedImage + "stage {\n}\n",
			summary: "Missing name for stage", line: 9, col: 7, count: 1},
		{name: "duplicate stage block", src: stage("prod", `  regions = ["eu-west-1"]`) + "stage \"prod\" {\n  accounts = [\"111122223333\"]\n}\n",
			summary: `duplicate stage block "prod"`, detail: `r.bake.hcl:9:1; merge the two blocks`, line: 12, col: 1, count: 1},
		{name: "unknown attribute in stage", src: stage("prod", `  account = ["111122223333"]`),
			summary: "Unsupported argument", line: 10, col: 3, count: 1},
		{name: "unknown block in stage", src: stage("prod", `  gates {`, `  }`),
			summary: "Unsupported block type", line: 10, col: 3, count: 1},
		{name: "two gate blocks", src: stage("prod", `  gate {`, `    min_soak = "1h"`, `  }`, `  gate {`, `    require_approval = true`, `  }`),
			summary: "duplicate gate block", detail: "r.bake.hcl:10:3, so remove one of them", line: 13, col: 3, count: 1},
		{name: "unknown attribute in gate", src: gate("prod", `    min_soke = "1h"`),
			summary: "Unsupported argument", line: 11, col: 5, count: 1},
		{name: "bad min_soak", src: gate("staging", `    min_soak = "1 day"`),
			summary: `invalid duration "1 day"`, detail: `"1d"`, line: 11, col: 16, count: 1},
		{name: "min_soak with an unknown unit", src: gate("staging", `    min_soak = "2w"`),
			summary: `invalid duration "2w"`, detail: "units ns, us, ms, s, m, h, and d for 24 hours", line: 11, col: 16, count: 1},
		{name: "negative min_soak", src: gate("staging", `    min_soak = "-1h"`),
			summary: `invalid duration "-1h"`, detail: "not negative", line: 11, col: 16, count: 1},
		{name: "negative min_soak in days", src: gate("prod", `    min_soak = "-2d"`),
			summary: `invalid duration "-2d"`, detail: "not negative", line: 11, col: 16, count: 1},
		{name: "min_soak as a number", src: gate("staging", `    min_soak = 24`),
			summary: `invalid type for "min_soak"`, detail: `min_soak = "24h"`, line: 11, col: 16, count: 1},
		{name: "min_soak on the first stage", src: gate("dev", `    min_soak = "1d"`),
			summary: `min_soak on the first stage "dev"`, detail: `no previous stage to soak in. Remove min_soak, or set it on a later stage: min_soak in stage "staging" is how long an image stays in "dev"`, line: 11, col: 16, count: 1},
		{name: "require_approval not a bool", src: gate("prod", `    require_approval = "yes"`),
			summary: `invalid type for "require_approval"`, detail: "Expected true or false", line: 11, col: 24, count: 1},
		{name: "approver that is not an ARN", src: gate("prod", `    require_approval = true`, `    approvers = ["arn:aws:iam::123456789012:role/rm", "release-managers"]`),
			summary: `invalid approver "release-managers"`, detail: `"arn:aws:iam::123456789012:role/release-managers"`, line: 12, col: 55, count: 1},
		{name: "approver of another service", src: gate("prod", `    require_approval = true`, `    approvers = ["arn:aws:s3:::bucket"]`),
			summary: `invalid approver "arn:aws:s3:::bucket"`, line: 12, col: 18, count: 1},
		{name: "approvers not a list", src: gate("prod", `    require_approval = true`, `    approvers = "arn:aws:iam::123456789012:role/rm"`),
			summary: `invalid type for "approvers"`, detail: "Expected a list of strings", line: 12, col: 17, count: 1},
		{name: "empty approvers", src: gate("prod", `    require_approval = true`, `    approvers = []`),
			summary: "empty approvers", detail: "let nobody approve", line: 12, col: 17, count: 1},
		{name: "approvers without require_approval", src: gate("prod", `    approvers = ["arn:aws:iam::123456789012:role/rm"]`),
			summary: "approvers without require_approval", detail: `add require_approval = true`, line: 11, col: 17, count: 1},
		{name: "bad approval_valid_for", src: gate("prod", `    require_approval = true`, `    approval_valid_for = "1 week"`),
			summary: `invalid duration "1 week"`, detail: `approval_valid_for is a duration such as`, line: 12, col: 26, count: 1},
		{name: "zero approval_valid_for", src: gate("prod", `    require_approval = true`, `    approval_valid_for = "0d"`),
			summary: `invalid duration "0s"`, detail: "expire at once", line: 12, col: 26, count: 1},
		{name: "negative approval_valid_for", src: gate("prod", `    require_approval = true`, `    approval_valid_for = "-1d"`),
			summary: `invalid duration "-1d"`, detail: "not negative", line: 12, col: 26, count: 1},
		{name: "approval_valid_for without require_approval", src: gate("prod", `    require_approval = false`, `    approval_valid_for = "1d"`),
			summary: "approval_valid_for without require_approval", line: 12, col: 26, count: 1},
		{name: "bad stage account id", src: stage("prod", `  accounts = ["111122223333", "12345678901a"]`),
			summary: `invalid account id "12345678901a"`, detail: "12 digits", line: 10, col: 31, count: 1},
		{name: "duplicate stage account id", src: stage("prod", `  accounts = ["111122223333", "111122223333"]`),
			summary: `duplicate account id "111122223333"`, line: 10, col: 31, count: 1},
		{name: "stage accounts not a list", src: stage("prod", `  accounts = "111122223333"`),
			summary: `invalid type for "accounts"`, detail: "Expected a list of strings", line: 10, col: 14, count: 1},
		{name: "stage sharing an AMI encrypted with the default key", src: stagedRecipe + okImage + "stage \"prod\" {\n  accounts = [\"111122223333\"]\n}\n",
			summary: "sharing an encrypted AMI needs a customer-managed KMS key", detail: `r.bake.hcl:5:1) with these accounts, but it is encrypted with the default aws/ebs key`, line: 9, col: 14, count: 1},
		{name: "bad stage region", src: stage("prod", `  regions = ["eu-west-1", "eu-west"]`),
			summary: `invalid region "eu-west"`, detail: `"us-east-1"`, line: 10, col: 27, count: 1},
		{name: "duplicate stage region", src: stage("prod", `  regions = ["eu-west-1", "us-west-2", "eu-west-1"]`),
			summary: `duplicate region "eu-west-1"`, detail: "r.bake.hcl:10:14.", line: 10, col: 40, count: 1},
		{name: "bad stage repository", src: stage("prod", `  repository = "127.0.0.1:5000/Team/web"`),
			summary: `invalid repository "127.0.0.1:5000/Team/web"`, detail: `"ghcr.io/org/web" (no tag)`, line: 10, col: 16, count: 1},
		{name: "stage repository with a tag", src: stage("prod", `  repository = "ghcr.io/org/web:prod"`),
			summary: `invalid repository "ghcr.io/org/web:prod"`, line: 10, col: 16, count: 1},

		// Variables.
		{name: "undeclared -var", src: okRecipe + okImage,
			opts:    func(string) Options { return Options{Vars: map[string]string{"verison": "1"}} },
			summary: `undeclared variable "verison"`, file: "<-var verison>", line: 1, col: 1, count: 1},
		{name: "-var-file with undeclared variable",
			src:     "variable \"version\" {\n  default = \"1.0.0\"\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1) + okImage,
			files:   map[string]string{"prod.vars.hcl": "# production\nversion = \"2.0.0\"\nverison = \"2.0.1\"\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "prod.vars.hcl")}} },
			summary: `undeclared variable "verison"`, detail: `did you mean "version"?`, file: "prod.vars.hcl", line: 3, col: 1, count: 1},
		{name: "JSON -var-file with undeclared variable", src: okRecipe + okImage,
			files:   map[string]string{"prod.vars.json": "{\n  \"nope\": 1\n}\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "prod.vars.json")}} },
			summary: `undeclared variable "nope"`, file: "prod.vars.json", line: 2, col: 3, count: 1},
		{name: "missing -var-file", src: okRecipe + okImage,
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "nope.vars.hcl")}} },
			summary: "reading var file", count: 1},
		{name: "variable with no value",
			src:     "variable \"region\" {\n  type = string\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "var.region", 1) + okImage,
			summary: `no value for required variable "region"`, detail: "BAKERY_VAR_region", line: 1, col: 1, count: 1},
		{name: "variable type mismatch from -var",
			src:     "variable \"count\" {\n  type    = number\n  default = 1\n}\n" + okRecipe + okImage,
			opts:    func(string) Options { return Options{Vars: map[string]string{"count": "abc"}} },
			summary: `invalid value for variable "count"`, detail: "a number is required", file: "<-var count>", line: 1, col: 1, count: 1},
		{name: "variable type mismatch from the environment",
			src:     "variable \"count\" {\n  type    = number\n  default = 1\n}\n" + okRecipe + okImage,
			opts:    func(string) Options { return Options{Env: []string{"BAKERY_VAR_count=abc"}} },
			summary: `invalid value for variable "count"`, file: "<env BAKERY_VAR_count>", line: 1, col: 1, count: 1},
		{name: "variable type mismatch from a var file",
			src:     "variable \"count\" {\n  type    = number\n  default = 1\n}\n" + okRecipe + okImage,
			files:   map[string]string{"x.vars.hcl": "count = \"abc\"\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "x.vars.hcl")}} },
			summary: `invalid value for variable "count"`, file: "x.vars.hcl", line: 1, col: 9, count: 1},
		{name: "list element of the wrong type in a var file",
			src:     "variable \"ports\" {\n  type    = list(number)\n  default = []\n}\n" + okRecipe + okImage,
			files:   map[string]string{"x.vars.hcl": "ports = [80, \"http\"]\n"},
			opts:    func(dir string) Options { return Options{VarFiles: []string{filepath.Join(dir, "x.vars.hcl")}} },
			summary: `invalid value for variable "ports"`, detail: "does not conform: a number is required (at [1])", file: "x.vars.hcl", line: 1, col: 9, count: 1},
		{name: "list -var that does not parse",
			src:     "variable \"stages\" {\n  type    = list(string)\n  default = [\"dev\"]\n}\n" + okRecipe,
			opts:    func(string) Options { return Options{Vars: map[string]string{"stages": `["dev", `}} },
			summary: `invalid value for variable "stages"`, detail: "read as an HCL expression", file: "<-var stages>", line: 1, col: 9},
		{name: "list -var with unquoted strings names the variable and the fix",
			src:     "variable \"regions\" {\n  type    = list(string)\n  default = []\n}\n" + okRecipe + okImage,
			opts:    func(string) Options { return Options{Vars: map[string]string{"regions": `[eu-west-1]`}} },
			summary: `invalid value for variable "regions"`, detail: `quote every string in it, as in -var 'regions=["a", "b"]'`, file: "<-var regions>", line: 1, col: 2, count: 1},
		{name: "map from the environment that does not parse",
			src:     "variable \"tags\" {\n  type    = map(string)\n  default = {}\n}\n" + okRecipe + okImage,
			opts:    func(string) Options { return Options{Env: []string{"BAKERY_VAR_tags={team = }"}} },
			summary: `invalid value for variable "tags"`, detail: `as in BAKERY_VAR_tags='{ k = "v" }'`, file: "<env BAKERY_VAR_tags>", line: 1, col: 9, count: 1},
		{name: "default of the wrong type",
			src:     "variable \"count\" {\n  type    = number\n  default = \"many\"\n}\n" + okRecipe + okImage,
			summary: `invalid default value for variable "count"`, line: 3, col: 13, count: 1},
		{name: "invalid type constraint",
			src:     "variable \"count\" {\n  type = integer\n}\n" + okRecipe + okImage,
			summary: "Invalid type specification", line: 2, col: 10, count: 1},
		{name: "duplicate variable",
			src:     "variable \"v\" {\n  default = 1\n}\nvariable \"v\" {\n  default = 2\n}\n" + okRecipe + okImage,
			summary: `duplicate variable block "v"`, detail: "r.bake.hcl:1:1", line: 4, col: 1, count: 1},
		{name: "validation block failing on the default", src: `variable "version" {
  type    = string
  default = "latest"
  validation {
    condition     = can(regex("^[0-9.]+$", var.version))
    error_message = "The version must be numeric, like 1.2.3."
  }
}
` + strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1) + okImage,
			summary: `invalid value for variable "version"`, detail: "must be numeric", line: 3, col: 13, count: 1},
		{name: "validation block failing on a -var", src: `variable "version" {
  type    = string
  default = "1.0.0"
  validation {
    condition     = can(regex("^[0-9.]+$", var.version))
    error_message = "The version must be numeric, like 1.2.3."
  }
}
` + strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1) + okImage,
			opts:    func(string) Options { return Options{Vars: map[string]string{"version": "latest"}} },
			summary: `invalid value for variable "version"`, detail: "r.bake.hcl:5:21", file: "<-var version>", line: 1, col: 1, count: 1},
		{name: "validation block without error_message", src: `variable "v" {
  default = "x"
  validation {
    condition = var.v != ""
  }
}
` + okRecipe + okImage,
			summary: `missing required argument "error_message"`, line: 3, col: 3, count: 1},

		// Locals and expressions.
		{name: "locals cycle", src: "locals {\n  a = local.b\n  b = local.c\n  c = local.a\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "local.a", 1) + okImage,
			summary: "cycle", detail: "local.a → local.b → local.c → local.a", line: 2, col: 3, count: 1},
		{name: "local referring to itself", src: "locals {\n  a = \"${local.a}x\"\n}\n" + okRecipe + okImage,
			summary: "cycle", detail: "local.a → local.a", line: 2, col: 3, count: 1},
		{name: "duplicate local", src: "locals {\n  a = 1\n}\nlocals {\n  a = 2\n}\n" + okRecipe + okImage,
			summary: `duplicate local value "a"`, line: 5, col: 3, count: 1},
		{name: "reference to an undeclared local", src: "locals {\n  a = 1\n}\n" + strings.Replace(okRecipe, `"1.0.0"`, "local.b", 1) + okImage,
			summary: "Unsupported attribute", line: 5, col: 18, count: 1},
		{name: "reference to an undeclared variable", src: strings.Replace(okRecipe, `"1.0.0"`, "var.version", 1) + okImage,
			summary: "Unsupported attribute", line: 2, col: 16, count: 1},
		{name: "unknown function", src: strings.Replace(okRecipe, `"1.0.0"`, "uuidv4()", 1) + okImage,
			summary: "Call to unknown function", line: 2, col: 13, count: 1},
		{name: "file() of a missing file", src: "recipe \"r\" {\n  version     = \"1.0.0\"\n  stages      = [\"dev\"]\n  description = file(\"nope.txt\")\n}\n" + okImage,
			summary: "Error in function call", detail: `no such file "nope.txt"; paths are relative to`, line: 4, col: 17, count: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{
				"app/hello":        "#!/bin/sh\necho hello\n",
				"files/app.conf":   "listen 8080\n",
				"scripts/setup.sh": "#!/bin/sh\necho setup\n",
				"r.bake.hcl":       c.src,
			}
			for k, v := range c.files {
				files[k] = v
			}
			dir := writeTree(t, files)
			var opts Options
			if c.opts != nil {
				opts = c.opts(dir)
			}
			r, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), opts)
			if !diags.HasErrors() {
				t.Fatalf("no error; want %q", c.summary)
			}
			if r != nil {
				t.Errorf("Load returned a recipe along with errors")
			}
			if c.count != 0 && len(diags) != c.count {
				t.Errorf("got %d diagnostics, want %d:\n%s", len(diags), c.count, diagText(diags))
			}
			for _, d := range diags {
				if !strings.Contains(d.Summary, c.summary) || !strings.Contains(d.Detail, c.detail) {
					continue
				}
				if d.Detail == "" {
					t.Errorf("diagnostic %q has no detail saying what to do", d.Summary)
				}
				if c.line == 0 {
					return // no position to check
				}
				if d.Subject == nil {
					t.Fatalf("diagnostic %q has no subject", d.Summary)
				}
				file := c.file
				if file == "" {
					file = "r.bake.hcl"
				}
				if got := filepath.Base(d.Subject.Filename); got != file && d.Subject.Filename != file {
					t.Errorf("subject file = %s, want %s", d.Subject.Filename, file)
				}
				if d.Subject.Start.Line != c.line || d.Subject.Start.Column != c.col {
					t.Errorf("subject starts at %d:%d, want %d:%d (%s)", d.Subject.Start.Line, d.Subject.Start.Column, c.line, c.col, d.Summary)
				}
				return
			}
			t.Fatalf("no diagnostic with summary containing %q and detail containing %q in:\n%s", c.summary, c.detail, diagText(diags))
		})
	}
}

// TestLoadCollectsIndependentErrors checks that one pass reports every
// independent problem rather than stopping at the first.
func TestLoadCollectsIndependentErrors(t *testing.T) {
	src := `recipe "r" {
  version = "1.0.0"
  stages  = []
}
container "c" {
  base          = "Not A Ref!"
  exposed_ports = ["http"]
  layer {
    source      = "missing/"
    destination = "relative"
  }
}
container "d" {
  base = "scratch"
  layer {
    source      = "app"
    destination = "/"
    mode        = "rwx"
  }
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src, "app/hello": "x"})
	_, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
	want := []string{
		"3:13: empty stages",
		"6:19: invalid base image reference",
		`7:20: invalid exposed port "http"`,
		`9:19: no such file or directory "missing/"`,
		"10:19: destination must be an absolute path",
		`16:19: directory source "app" must end with "/"`,
		"18:19: invalid mode",
	}
	wantDiags(t, diags, filepath.Join(dir, "r.bake.hcl"), want)
}

// TestMachineImageCollectsIndependentErrors: one pass reports every
// independent problem of a machine_image block, and nothing twice.
func TestMachineImageCollectsIndependentErrors(t *testing.T) {
	src := `recipe "r" {
  version = "1.0.0"
  stages  = ["dev"]
}
machine_image "m" {
  source_ami    = "ami-nope"
  instance_type = "huge"
  regions       = ["eu-west-1", "eu-west-1"]
  tags          = { "bakery:stage" = "prod" }
  provision "ansible" {
    playbook = "site.yml"
  }
  provision "file" {
    source      = "missing.conf"
    destination = "etc/app.conf"
  }
  provision "shell" {
    pause_before = "soon"
  }
}
machine_image "m" {
  source_ami_ssm = "/aws/service/x"
}
`
	dir := writeTree(t, map[string]string{"r.bake.hcl": src})
	_, diags := NewLoader().Load(filepath.Join(dir, "r.bake.hcl"), Options{})
	want := []string{
		`6:19: invalid AMI id "ami-nope"`,
		`7:19: invalid instance type "huge"`,
		`8:33: duplicate region "eu-west-1"`,
		`9:21: reserved tag key "bakery:stage"`,
		`10:13: unknown provisioner type "ansible"`,
		`14:19: no such file or directory "missing.conf"`,
		"15:19: destination must be an absolute path",
		"17:3: missing inline or script",
		`18:20: invalid duration "soon"`,
		`21:1: duplicate machine_image block "m"`,
	}
	wantDiags(t, diags, filepath.Join(dir, "r.bake.hcl"), want)
}
