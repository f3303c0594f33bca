package faultproxy_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bakery-sh/bakery/internal/awsx"
	"github.com/bakery-sh/bakery/internal/faultproxy"
)

// TestLoseAnswerOfAnS3PutObject: S3 REST calls carry no Action
// parameter; the proxy names them as the SDK does, so that LoseAnswer
// can drop the answer of a PutObject that took effect.
func TestLoseAnswerOfAnS3PutObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, faultproxy.LoseAnswer("PutObject", 1))
	direct := awsx.NewS3(e.srv.ConfigForAccount(t, "us-east-1", e.account), "")
	proxied := awsx.NewS3(e.proxy.Config(e.srv.ConfigForAccount(t, "us-east-1", e.account)), "", func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if _, err := proxied.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("lost-answers")}); err != nil {
		t.Fatal(err)
	}
	_, err := proxied.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("lost-answers"), Key: aws.String("a/b.json"), Body: strings.NewReader("kept")})
	if err == nil {
		t.Fatal("PutObject with a lost answer succeeded")
	}
	out, err2 := direct.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("lost-answers"), Key: aws.String("a/b.json")})
	if err2 != nil {
		t.Fatalf("after the lost answer (%v) moto has no object: %v", err, err2)
	}
	body, _ := io.ReadAll(out.Body)
	if string(body) != "kept" {
		t.Errorf("object body %q, want kept", body)
	}
	if _, err := proxied.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("lost-answers")}); err != nil {
		t.Errorf("ListObjectsV2 through the proxy: %v", err)
	}
	for action, want := range map[string]int{"CreateBucket": 1, "PutObject": 1, "ListObjectsV2": 1} {
		if n := e.proxy.Count(action); n != want {
			t.Errorf("the proxy logged %d %s calls, want %d", n, action, want)
		}
	}
	if n := e.proxy.Faults("PutObject", faultproxy.FaultLost); n != 1 {
		t.Errorf("lost PutObject answers = %d, want 1", n)
	}
}
