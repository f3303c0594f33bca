package awsx_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/bakery-sh/bakery/internal/awsx"
)

// Plain http is allowed only to a loopback emulator; https anywhere.
func TestLoadAcceptsHTTPOnlyOnLoopback(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		endpoint string
		// want is "" when Load accepts the endpoint, else what its error
		// says.
		want []string
	}{
		{endpoint: "http://127.0.0.1:5000"},
		{endpoint: "http://127.1.2.3:5000"},
		{endpoint: "http://127.255.255.254"},
		{endpoint: "http://[::1]:5000"},
		{endpoint: "http://[::ffff:127.0.0.1]:5000"},
		{endpoint: "http://localhost:5000"},
		{endpoint: "http://LocalHost:5000/"},
		{endpoint: "https://ec2.us-east-1.amazonaws.com"},
		{endpoint: "https://10.0.0.5:4566"},
		{endpoint: "https://localhost:4566"},
		{endpoint: "HTTPS://emulator.example.com"},

		{endpoint: "http://10.0.0.5:4566", want: []string{"plain http", "not loopback", "use https (https://10.0.0.5:4566)", "127.0.0.1"}},
		{endpoint: "http://emulator.example.com", want: []string{"plain http", "use https (https://emulator.example.com)"}},
		{endpoint: "http://128.0.0.1:5000", want: []string{"not loopback"}},
		{endpoint: "http://[::2]:5000", want: []string{"not loopback"}},
		{endpoint: "http://0.0.0.0:5000", want: []string{"not loopback"}},
		{endpoint: "http://localhost.example.com:5000", want: []string{"not loopback"}},
		{endpoint: "http://127.0.0.1.nip.io:5000", want: []string{"not loopback"}},
		{endpoint: "127.0.0.1:5000", want: []string{"not an http(s) URL", "http://127.0.0.1:5000"}},
		{endpoint: "ftp://127.0.0.1", want: []string{"not an http(s) URL"}},
		{endpoint: "http://", want: []string{"not an http(s) URL"}},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			cfg, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(),
				env(map[string]string{awsx.EndpointEnv: tc.endpoint}))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Load with %s=%s: %v", awsx.EndpointEnv, tc.endpoint, err)
				}
				if got := aws.ToString(cfg.BaseEndpoint); got != tc.endpoint {
					t.Errorf("BaseEndpoint = %q, want %q", got, tc.endpoint)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load with %s=%s succeeded, want an error", awsx.EndpointEnv, tc.endpoint)
			}
			for _, w := range append(tc.want, awsx.EndpointEnv) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// WithEndpoint is held to the same rule as the environment variable.
func TestWithEndpointRefusesPlainHTTPToARemoteHost(t *testing.T) {
	isolate(t)
	_, err := awsx.Load(context.Background(), awsx.WithRegion("us-east-1"), fakeCreds(), awsx.WithEndpoint("http://192.168.1.10:5000"))
	if err == nil || !strings.Contains(err.Error(), "WithEndpoint") || !strings.Contains(err.Error(), "use https") {
		t.Fatalf("Load(WithEndpoint(http://192.168.1.10:5000)) = %v, want an error naming WithEndpoint that says to use https", err)
	}
}
