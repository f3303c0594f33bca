// Package faultproxy puts the ways real AWS misbehaves between bakery and
// moto_server, which answers at once and is immediately consistent. It is
// a test helper: import it from _test.go files only.
//
// A Proxy is an HTTP reverse proxy on 127.0.0.1 in front of a moto_server
// URL. A test points its AWS config at it (Config sets BaseEndpoint) and
// chooses the faults:
//
//	clock := faultproxy.NewClock(start, time.Second) // one second per request
//	p := faultproxy.Start(t, srv.URL,
//		faultproxy.WithClock(clock.Now), faultproxy.WithSeed(1),
//		faultproxy.Throttle(0.2),
//		faultproxy.FreshNotFound(30*time.Second))
//	cfg := p.Config(srv.ConfigForAccount(t, "us-east-1", account))
//
// The rules, which combine:
//
//   - Throttle and Unavailable answer a fraction of the calls with
//     RequestLimitExceeded (HTTP 400) or Unavailable (HTTP 503) without
//     forwarding them; the SDK's retryer has to try again.
//   - FreshNotFound remembers the resources that create calls return
//     (RunInstances, CreateImage, CopyImage, CreateSecurityGroup,
//     ImportKeyPair, ...). For a while after, a call that names one of them
//     in its parameters gets EC2's *.NotFound error without being
//     forwarded, and Describe* list answers leave them out.
//   - StaleReads answers a DescribeImages call with tag filters with the
//     answer an identical call got a moment ago.
//   - LoseAnswer lets a call take effect and then drops its answer. S3
//     calls are named as the SDK names them (PutObject, GetObject, ...).
//   - InternalError answers a fraction of the calls with HTTP 500.
//   - Latency holds a fraction of the calls for a while before
//     forwarding them.
//   - ResetBefore closes the connection of a fraction of the calls
//     without forwarding them (the call never reached AWS); ResetAfter
//     forwards them and then closes the connection (the call took effect,
//     its answer was lost).
//   - Always, as EC2 does and moto does not, a call with a ClientToken
//     that an earlier successful call of the same action carried gets
//     that call's answer again without being forwarded, so that a call
//     the SDK retries after a lost answer does not create a second
//     instance (logged with FaultNone and Code "idempotent replay").
//   - Always, as Auto Scaling does and moto does not, CreateAutoScalingGroup
//     of a name the proxy saw created (and not deleted) is answered
//     AlreadyExists without being forwarded.
//   - StaleDescribes answers a fraction of the Describe* calls of any
//     service with the answer an identical call got a moment ago.
//
// Time comes from the clock given with WithClock, read once per request,
// so that tests need not sleep; randomness from WithSeed. Each rate
// rule decides a call by hashing the seed, the rule, the action, the
// region and how many calls of that action in that region came before,
// so that the same seed gives the same faults to the same sequence of
// calls of each action, however calls of different actions interleave
// (a subprocess with concurrent clients stays reproducible). Every request is logged (Calls, Count, Faults, RetriedAfter)
// for assertions such as "the bake retried DescribeImages after a
// NotFound".
//
// Requests are told apart by protocol: EC2 and the other query services
// (Auto Scaling, STS) carry Action in a form-encoded body; JSON services
// (SSM) name it in the X-Amz-Target header. The region and service come
// from the SigV4 credential scope of the Authorization header.
package faultproxy

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Proxy is a fault-injecting reverse proxy in front of moto_server. It is
// safe for concurrent use.
type Proxy struct {
	// URL is the proxy's base URL, such as http://127.0.0.1:40123; use it
	// as aws.Config.BaseEndpoint (Config does).
	URL string

	target *url.URL
	srv    *httptest.Server
	client *http.Client
	now    func() time.Time

	account string // moto account of requests that name none

	mu          sync.Mutex
	seed        uint64
	throttle    []rateRule
	unavailable []rateRule
	internal    []rateRule
	resetBefore []rateRule
	resetAfter  []rateRule
	latency     []rateRule
	staleAny    []rateRule
	seen        map[string]uint64 // calls so far, by action and region
	freshFor    time.Duration
	staleFor    time.Duration
	lose        map[string]int // answers still to lose, by action
	fresh       map[string]freshResource
	cache       map[string]cachedAnswer
	tokens      map[string]cachedAnswer // successful answers by ClientToken
	asgs        map[string]bool         // Auto Scaling groups created, by account, region and name
	copyTags    bool                    // ApplyCopyTags
	calls       []Call
}

// rateRule answers a fraction p of the calls of actions (all when empty)
// in region (any when empty) with an error.
type rateRule struct {
	p       float64
	d       time.Duration // Latency's delay, StaleDescribes' age
	actions []string
	region  string
}

func (r rateRule) applies(req request) bool {
	return (len(r.actions) == 0 || slices.Contains(r.actions, req.action)) && (r.region == "" || r.region == req.region)
}

// freshResource is a resource a create call returned.
type freshResource struct {
	id, code, message string
	// byName is set for a key pair's name: a name, unlike an id, can
	// equal another resource's name (a group called like the key pair),
	// so it counts only in KeyName parameters.
	byName  bool
	created time.Time
}

// cachedAnswer is an answer StaleReads may give again.
type cachedAnswer struct {
	at     time.Time
	status int
	header http.Header
	body   []byte
}

// Option configures a Proxy.
type Option func(*Proxy)

// WithClock sets the clock the proxy reads, once per request, to decide
// whether a resource is still fresh and an answer still stale enough to
// give again. Default: time.Now. NewClock makes a fake one.
func WithClock(now func() time.Time) Option {
	return func(p *Proxy) {
		if now != nil {
			p.now = now
		}
	}
}

// WithSeed seeds the draws that decide which calls the rate rules
// (Throttle, Unavailable, InternalError, Latency, ResetBefore,
// ResetAfter, StaleDescribes) hit. Default: 1. The same seed and the same sequence of
// calls give the same faults.
func WithSeed(seed uint64) Option { return func(p *Proxy) { p.seed = seed } }

// WithAccount makes every request that carries no moto account header
// (mototest.AccountHeader) act in account (12 digits), so that a process
// the test does not configure, such as the bakery binary, works in a
// fresh account of a shared moto_server. Default: moto's default
// account.
func WithAccount(account string) Option { return func(p *Proxy) { p.account = account } }

// Throttle answers a fraction p (0 to 1) of the calls of actions (every
// action when none is named) with a throttling error, without forwarding
// them: EC2's RequestLimitExceeded (HTTP 400), Throttling for the other
// query services, ThrottlingException for JSON ones. Default: none.
// Several Throttle options add up, each drawing on its own.
func Throttle(p float64, actions ...string) Option {
	return func(px *Proxy) { px.throttle = append(px.throttle, rateRule{p: p, actions: actions}) }
}

// Unavailable answers a fraction p of the calls of actions (every action
// when none is named) with HTTP 503 and the error code Unavailable
// (ServiceUnavailable, ServiceUnavailableException), without forwarding
// them. Default: none.
func Unavailable(p float64, actions ...string) Option {
	return func(px *Proxy) { px.unavailable = append(px.unavailable, rateRule{p: p, actions: actions}) }
}

// FreshNotFound makes every EC2 resource a create call returns unknown to
// other calls for d after the answer, as EC2's eventual consistency can:
// a call naming it in a parameter other than a filter (InstanceId.1,
// ImageId, GroupId, ResourceId.1, SourceImageId, KeyName, ...) gets the
// matching *.NotFound error (InvalidInstanceID.NotFound,
// InvalidAMIID.NotFound, InvalidGroup.NotFound, ...) without being
// forwarded; list calls (DescribeImages, DescribeInstances,
// DescribeSecurityGroups, DescribeKeyPairs, DescribeSnapshots,
// DescribeVolumes) are forwarded and the resource is cut out of their
// answer. Default: 0, off.
func FreshNotFound(d time.Duration) Option { return func(p *Proxy) { p.freshFor = d } }

// StaleReads answers a DescribeImages call with a tag filter (tag:KEY or
// tag-key) with the answer given to an identical call (same account,
// region and parameters) when that answer is younger than d, without
// forwarding it: the list does not show tags written since. The answer's
// age counts from when moto gave it; giving it again does not renew it.
// Default: 0, off.
func StaleReads(d time.Duration) Option { return func(p *Proxy) { p.staleFor = d } }

// LoseAnswer forwards the first n calls of action that moto answers with
// success, so that they take effect, and then closes the connection
// instead of answering, as when an answer is lost on the wire. The SDK
// sees a connection error and may retry the call. Default: no answer is
// lost.
func LoseAnswer(action string, n int) Option {
	return func(p *Proxy) {
		if p.lose == nil {
			p.lose = map[string]int{}
		}
		p.lose[action] += n
	}
}

// InternalError answers a fraction p of the calls of actions (every
// action when none is named) with HTTP 500 and the error code
// InternalError (EC2) or InternalFailure (the other services), without
// forwarding them. Default: none.
func InternalError(p float64, actions ...string) Option {
	return func(px *Proxy) { px.internal = append(px.internal, rateRule{p: p, actions: actions}) }
}

// InternalErrorIn is InternalError for the calls made in region only, so
// that a test can fail an operation part way: in one region and not in
// the others. Default: none.
func InternalErrorIn(region string, p float64, actions ...string) Option {
	return func(px *Proxy) {
		px.internal = append(px.internal, rateRule{p: p, actions: actions, region: region})
	}
}

// Latency holds a fraction p of the calls of actions (every action when
// none is named) for d of real time before forwarding them, as a slow
// answer does; such a call is logged with FaultDelayed when nothing else
// happened to it. Default: none.
func Latency(p float64, d time.Duration, actions ...string) Option {
	return func(px *Proxy) { px.latency = append(px.latency, rateRule{p: p, d: d, actions: actions}) }
}

// ResetBefore closes the connection of a fraction p of the calls of
// actions (every action when none is named) without forwarding them and
// without an answer, as when a connection breaks before the request
// reaches AWS: nothing took effect. Logged as FaultReset. Default: none.
func ResetBefore(p float64, actions ...string) Option {
	return func(px *Proxy) { px.resetBefore = append(px.resetBefore, rateRule{p: p, actions: actions}) }
}

// ResetAfter forwards a fraction p of the calls of actions (every action
// when none is named) and, when moto answers with success, closes the
// connection instead of answering: the call took effect and its answer
// was lost. Logged as FaultLost. LoseAnswer does the same to the first n
// calls of one action. Default: none.
func ResetAfter(p float64, actions ...string) Option {
	return func(px *Proxy) { px.resetAfter = append(px.resetAfter, rateRule{p: p, actions: actions}) }
}

// StaleDescribes answers a fraction p of the Describe* calls of any
// service (or of actions, when named) with the answer an identical call
// (same account, region, service and parameters) got less than d ago,
// when there is one, without forwarding it: what changed since is not
// seen yet. Unlike StaleReads it is not limited to tag-filtered
// DescribeImages, and it draws: an identical call may also get the fresh
// answer. Logged as FaultStale. Default: none.
func StaleDescribes(p float64, d time.Duration, actions ...string) Option {
	return func(px *Proxy) { px.staleAny = append(px.staleAny, rateRule{p: p, d: d, actions: actions}) }
}

// ApplyCopyTags makes CopyImage tag its copy as EC2 does: EC2 applies a
// CopyImage's TagSpecifications to the new AMI as it creates it, so a
// copy is never without its tags, while moto 5.2.5 ignores them (and a
// process killed between CopyImage and its own CreateTags would leave,
// on moto only, an AMI no tag names). The proxy tags the copy in moto
// before it answers, faults included (a lost answer loses the answer,
// not the tags).
func ApplyCopyTags() Option { return func(p *Proxy) { p.copyTags = true } }

// Start starts a Proxy in front of target (a moto_server URL such as
// mototest.Server.URL) and closes it when the test ends.
func Start(t testing.TB, target string, opts ...Option) *Proxy {
	t.Helper()
	p, err := New(target, opts...)
	if err != nil {
		t.Fatalf("starting the fault proxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// New starts a Proxy in front of target. Close stops it.
func New(target string, opts ...Option) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("target %q is not an http(s) URL", target)
	}
	p := &Proxy{
		target: u,
		now:    time.Now,
		seed:   1,
		fresh:  map[string]freshResource{},
		cache:  map[string]cachedAnswer{},
		seen:   map[string]uint64{},
		tokens: map[string]cachedAnswer{},
		asgs:   map[string]bool{},
		// Its own transport: answers come back uncompressed (the proxy
		// reads them), and connections to moto are not shared with the
		// test's clients.
		client: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}},
	}
	for _, o := range opts {
		o(p)
	}
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.srv.Close()
	p.client.CloseIdleConnections()
}

// Config returns cfg sending every call through the proxy: a copy with
// BaseEndpoint set to the proxy's URL.
func (p *Proxy) Config(cfg aws.Config) aws.Config {
	cfg = cfg.Copy()
	cfg.BaseEndpoint = aws.String(p.URL)
	return cfg
}

// accountHeader is the header moto_server reads the account from
// (mototest.AccountHeader; not imported, so that mototest may use this
// package in its own tests).
const accountHeader = "x-moto-account-id"

// request is what the proxy understood of a request.
type request struct {
	action, service, region, account string
	json                             bool       // a JSON protocol (X-Amz-Target)
	params                           url.Values // form and query parameters
}

func parseRequest(r *http.Request, body []byte) request {
	req := request{account: r.Header.Get(accountHeader)}
	req.region, req.service = credentialScope(r.Header.Get("Authorization"))
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		req.json = true
		req.action = target[strings.LastIndex(target, ".")+1:]
		return req
	}
	req.params = r.URL.Query()
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			for k, vs := range form {
				req.params[k] = append(req.params[k], vs...)
			}
		}
	}
	req.action = req.params.Get("Action")
	if req.action == "" && req.service == "s3" {
		req.action = s3Action(r)
	}
	return req
}

// s3Action names the S3 REST call r makes (path-style, as bakery's S3
// clients address an endpoint override): PutObject, GetObject,
// ListObjectsV2, ... S3 names its calls by method and path, not by an
// Action parameter.
func s3Action(r *http.Request) string {
	object := strings.Contains(strings.Trim(r.URL.Path, "/"), "/")
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		switch {
		case !object:
			return "CreateBucket"
		case r.Header.Get("X-Amz-Copy-Source") != "":
			return "CopyObject"
		}
		return "PutObject"
	case http.MethodGet:
		switch {
		case object:
			return "GetObject"
		case q.Get("list-type") == "2":
			return "ListObjectsV2"
		}
		return "ListObjects"
	case http.MethodHead:
		if object {
			return "HeadObject"
		}
		return "HeadBucket"
	case http.MethodDelete:
		if object {
			return "DeleteObject"
		}
		return "DeleteBucket"
	case http.MethodPost:
		if q.Has("delete") {
			return "DeleteObjects"
		}
	}
	return ""
}

// credentialScope returns the region and service of a SigV4
// Authorization header ("AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...").
func credentialScope(auth string) (region, service string) {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) < 5 {
		return "", ""
	}
	return parts[2], parts[3]
}

// ec2 reports whether the request is an EC2 query call.
func (r request) ec2() bool { return !r.json && r.service == "ec2" }

// cacheKey identifies identical requests.
func (r request) cacheKey() string {
	return r.account + "\x00" + r.region + "\x00" + r.params.Encode()
}

// tokenKey identifies an EC2 call by its ClientToken ("" without one).
func (r request) tokenKey() string {
	t := r.params.Get("ClientToken")
	if !r.ec2() || t == "" {
		return ""
	}
	return r.account + "\x00" + r.region + "\x00" + r.action + "\x00" + t
}

// staleKey identifies identical requests of any service.
func (r request) staleKey() string {
	return r.service + "\x00" + r.action + "\x00" + r.cacheKey()
}

// hasTagFilter reports whether the request filters on a tag.
func (r request) hasTagFilter() bool {
	for k, vs := range r.params {
		if strings.HasPrefix(k, "Filter.") && strings.HasSuffix(k, ".Name") {
			for _, v := range vs {
				if strings.HasPrefix(v, "tag:") || v == "tag-key" {
					return true
				}
			}
		}
	}
	return false
}

// ServeHTTP answers one request: with an injected fault, or with moto's
// answer (possibly changed by the rules).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "faultproxy: reading the request: "+err.Error(), http.StatusBadGateway)
		return
	}
	if p.account != "" && r.Header.Get(accountHeader) == "" {
		r.Header.Set(accountHeader, p.account)
	}
	req := parseRequest(r, body)
	now := p.now()
	call := Call{Time: now, Action: req.action, Service: req.service, Region: req.region}

	p.mu.Lock()
	n := p.next(req)
	if status, code, msg := p.injectBefore(req, now, n); status != 0 {
		call.Fault, call.Code = faultOf(status, code), code
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		writeError(w, req, status, code, msg)
		return
	}
	group := req.account + "\x00" + req.region + "\x00" + req.params.Get("AutoScalingGroupName")
	if req.action == "CreateAutoScalingGroup" && p.asgs[group] {
		call.Code = "AlreadyExists"
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		writeError(w, req, http.StatusBadRequest, "AlreadyExists",
			"AutoScalingGroup by this name already exists - A group with the name "+req.params.Get("AutoScalingGroupName")+" already exists")
		return
	}
	token := req.tokenKey()
	if c, ok := p.tokens[token]; ok && token != "" {
		call.Code = "idempotent replay"
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		writeAnswer(w, c.status, c.header, c.body)
		return
	}
	if p.fires(p.resetBefore, req, n, 10) != nil {
		call.Fault = FaultReset
		p.calls = append(p.calls, call)
		p.mu.Unlock()
		loseAnswer(w)
		return
	}
	if req.action == "DescribeImages" && p.staleFor > 0 && req.hasTagFilter() {
		if c, ok := p.cache[req.cacheKey()]; ok && now.Sub(c.at) < p.staleFor {
			call.Fault = FaultStale
			p.calls = append(p.calls, call)
			p.mu.Unlock()
			writeAnswer(w, c.status, c.header, c.body)
			return
		}
	}
	describe := strings.HasPrefix(req.action, "Describe")
	if rule := p.fires(p.staleAny, req, n, 20); describe && rule != nil {
		if c, ok := p.cache[req.staleKey()]; ok && now.Sub(c.at) < rule.d {
			call.Fault = FaultStale
			p.calls = append(p.calls, call)
			p.mu.Unlock()
			writeAnswer(w, c.status, c.header, c.body)
			return
		}
	}
	var delay time.Duration
	if rule := p.fires(p.latency, req, n, 30); rule != nil {
		delay = rule.d
		call.Fault = FaultDelayed
	}
	loseAfter := p.fires(p.resetAfter, req, n, 40) != nil
	p.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	status, header, answer, err := p.forward(r, body)
	if err != nil {
		call.Fault, call.Code = FaultFailed, err.Error()
		p.log(call)
		http.Error(w, "faultproxy: forwarding to moto: "+err.Error(), http.StatusBadGateway)
		return
	}

	if status/100 == 2 && req.ec2() && req.action == "CopyImage" && p.copyTags {
		if err := p.tagCopy(r, req, answer); err != nil {
			call.Fault, call.Code = FaultFailed, err.Error()
			p.log(call)
			http.Error(w, "faultproxy: tagging the copy in moto: "+err.Error(), http.StatusBadGateway)
			return
		}
	}
	p.mu.Lock()
	ok := status/100 == 2
	if ok && req.ec2() && p.freshFor > 0 {
		p.remember(req.action, answer, now)
	}
	lost := false
	if ok && p.lose[req.action] > 0 {
		p.lose[req.action]--
		lost = true
		call.Fault = FaultLost
	} else if ok && loseAfter {
		lost = true
		call.Fault = FaultLost
	}
	if !lost && ok && req.ec2() && p.freshFor > 0 {
		if cut, n := p.hide(req.action, answer, now); n > 0 {
			answer = cut
			call.Fault, call.Code = FaultHidden, fmt.Sprintf("%d hidden", n)
		}
	}
	if !lost && ok && req.action == "DescribeImages" && p.staleFor > 0 && req.hasTagFilter() {
		p.cache[req.cacheKey()] = cachedAnswer{at: now, status: status, header: header, body: answer}
	}
	switch {
	case ok && req.action == "CreateAutoScalingGroup":
		p.asgs[group] = true
	case ok && req.action == "DeleteAutoScalingGroup":
		delete(p.asgs, group)
	}
	if ok && token != "" {
		// Remembered even when the answer is lost: that is when the
		// retry comes.
		p.tokens[token] = cachedAnswer{at: now, status: status, header: header, body: answer}
	}
	if !lost && ok && describe && len(p.staleAny) > 0 {
		p.cache[req.staleKey()] = cachedAnswer{at: now, status: status, header: header, body: answer}
	}
	p.calls = append(p.calls, call)
	p.mu.Unlock()

	if lost {
		loseAnswer(w)
		return
	}
	writeAnswer(w, status, header, answer)
}

// injectBefore decides whether req is answered with an error without
// being forwarded; status 0 means forward it. p.mu is held.
func (p *Proxy) injectBefore(req request, now time.Time, n uint64) (status int, code, msg string) {
	if req.action == "" {
		return 0, "", ""
	}
	if p.fires(p.throttle, req, n, 0) != nil {
		return http.StatusBadRequest, throttleCode(req), "Request limit exceeded."
	}
	if p.fires(p.unavailable, req, n, 1) != nil {
		return http.StatusServiceUnavailable, unavailableCode(req), "The service is unavailable. Please try again shortly."
	}
	if p.fires(p.internal, req, n, 2) != nil {
		return http.StatusInternalServerError, internalCode(req), "An internal error has occurred."
	}
	if req.ec2() && p.freshFor > 0 {
		for _, k := range slices.Sorted(maps.Keys(req.params)) {
			if strings.HasPrefix(k, "Filter.") || k == "Action" || k == "Version" {
				continue
			}
			for _, v := range req.params[k] {
				if f, ok := p.fresh[v]; ok && now.Sub(f.created) < p.freshFor && (!f.byName || strings.Contains(k, "KeyName")) {
					return http.StatusBadRequest, f.code, f.message
				}
			}
		}
	}
	return 0, "", ""
}

// next counts req among the calls of its action and region and returns
// how many came before it. p.mu is held.
func (p *Proxy) next(req request) uint64 {
	k := req.service + "\x00" + req.region + "\x00" + req.action
	n := p.seen[k]
	p.seen[k] = n + 1
	return n
}

// fires returns the first rule of rules (of the kind numbered kind) that
// applies to req, the n-th call of its action and region, and draws it;
// nil when none does. The draw hashes the seed, the kind, the rule's
// place, the action, the region and n, so it does not depend on how
// calls of other actions interleave.
func (p *Proxy) fires(rules []rateRule, req request, n uint64, kind int) *rateRule {
	if req.action == "" {
		return nil
	}
	for i := range rules {
		if rules[i].applies(req) && draw(p.seed, kind*1000+i, req, n) < rules[i].p {
			return &rules[i]
		}
	}
	return nil
}

// draw returns a number in [0, 1) that is a function of its arguments.
func draw(seed uint64, rule int, req request, n uint64) float64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%d\x00%s\x00%s\x00%s\x00%d", seed, rule, req.service, req.region, req.action, n)
	x := h.Sum64()
	// splitmix64's finalizer spreads FNV's low-entropy high bits.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func internalCode(req request) string {
	if req.service == "ec2" && !req.json {
		return "InternalError"
	}
	return "InternalFailure"
}

func throttleCode(req request) string {
	switch {
	case req.json:
		return "ThrottlingException"
	case req.service == "ec2":
		return "RequestLimitExceeded"
	}
	return "Throttling"
}

func unavailableCode(req request) string {
	switch {
	case req.json:
		return "ServiceUnavailableException"
	case req.service == "ec2":
		return "Unavailable"
	}
	return "ServiceUnavailable"
}

func faultOf(status int, code string) Fault {
	switch {
	case status == http.StatusServiceUnavailable:
		return FaultUnavailable
	case status == http.StatusInternalServerError:
		return FaultInternal
	case strings.HasSuffix(code, "NotFound") || strings.HasSuffix(code, "NotFoundException"):
		return FaultNotFound
	}
	return FaultThrottled
}

// forward sends the request to moto and returns its whole answer.
func (p *Proxy) forward(r *http.Request, body []byte) (int, http.Header, []byte, error) {
	u := *p.target
	u.Path = singleJoin(p.target.Path, r.URL.Path)
	u.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, vs := range r.Header {
		if hopHeaders[http.CanonicalHeaderKey(k)] {
			continue
		}
		out.Header[k] = slices.Clone(vs)
	}
	out.ContentLength = int64(len(body))
	resp, err := p.client.Do(out)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	header := resp.Header.Clone()
	for k := range hopHeaders {
		header.Del(k)
	}
	return resp.StatusCode, header, answer, nil
}

func singleJoin(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case strings.HasSuffix(a, "/") && strings.HasPrefix(b, "/"):
		return a + b[1:]
	}
	return a + b
}

// hopHeaders are not forwarded either way (Accept-Encoding, so that
// moto's answers arrive uncompressed; Content-Length, which the proxy sets).
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Accept-Encoding": true, "Content-Length": true,
}

func writeAnswer(w http.ResponseWriter, status int, header http.Header, body []byte) {
	for k, vs := range header {
		w.Header()[k] = slices.Clone(vs)
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// loseAnswer closes the connection without an answer.
func loseAnswer(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "faultproxy: answer lost", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		http.Error(w, "faultproxy: answer lost", http.StatusInternalServerError)
		return
	}
	_ = buf.Flush()
	_ = conn.Close()
}

// writeError answers with an AWS error in req's protocol.
func writeError(w http.ResponseWriter, req request, status int, code, msg string) {
	var ctype string
	var body bytes.Buffer
	reqID := fmt.Sprintf("faultproxy-%08x", rand.Uint32())
	switch {
	case req.json:
		ctype = "application/x-amz-json-1.1"
		fmt.Fprintf(&body, `{"__type":%q,"message":%q}`, code, msg)
	case req.service == "ec2":
		ctype = "text/xml;charset=UTF-8"
		fmt.Fprintf(&body, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
			xmlEscape(code), xmlEscape(msg), reqID)
	default:
		ctype = "text/xml"
		fmt.Fprintf(&body, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
			xmlEscape(code), xmlEscape(msg), reqID)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("x-amzn-RequestId", reqID)
	writeAnswer(w, status, w.Header(), body.Bytes())
}

// imageIDRE finds the id of the AMI a CopyImage answer names.
var imageIDRE = regexp.MustCompile(`<imageId>(ami-[0-9a-f]+)</imageId>`)

// tagCopy writes, in moto, the image tags of a CopyImage request on the
// copy its answer names (see ApplyCopyTags), with a CreateTags signed as
// the request was (moto takes the account and region from it).
func (p *Proxy) tagCopy(r *http.Request, req request, answer []byte) error {
	m := imageIDRE.FindSubmatch(answer)
	if m == nil {
		return fmt.Errorf("no image id in the CopyImage answer")
	}
	form := url.Values{"Action": {"CreateTags"}, "Version": {req.params.Get("Version")}, "ResourceId.1": {string(m[1])}}
	n := 0
	for i := 1; ; i++ {
		spec := fmt.Sprintf("TagSpecification.%d.", i)
		rt := req.params.Get(spec + "ResourceType")
		if rt == "" {
			break
		}
		if rt != "image" {
			continue
		}
		for j := 1; ; j++ {
			k := req.params.Get(fmt.Sprintf("%sTag.%d.Key", spec, j))
			if k == "" {
				break
			}
			n++
			form.Set(fmt.Sprintf("Tag.%d.Key", n), k)
			form.Set(fmt.Sprintf("Tag.%d.Value", n), req.params.Get(fmt.Sprintf("%sTag.%d.Value", spec, j)))
		}
	}
	if n == 0 {
		return nil
	}
	u := *p.target
	u.Path = singleJoin(p.target.Path, r.URL.Path)
	out, err := http.NewRequestWithContext(r.Context(), http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token", accountHeader} {
		if v := r.Header.Get(h); v != "" {
			out.Header.Set(h, v)
		}
	}
	out.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := p.client.Do(out)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("CreateTags answered %d: %s", resp.StatusCode, body)
	}
	return nil
}
