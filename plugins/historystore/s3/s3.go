// Package s3 is the "s3" history store: the historian's objects in an S3 bucket (Amazon S3,
// MinIO or another S3-compatible store), through minio-go. Every object is one PutObject
// (atomic in S3: readers see the old object or the new one), listed with ListObjects and read
// with ranged GETs.
//
// Importing it registers it (plugins.RegisterHistoryStore) with the config keys:
//
//	endpoint       host[:port], or a URL http(s)://host[:port] (default https://s3.amazonaws.com)
//	bucket         the bucket (required)
//	prefix         a key prefix inside the bucket, as a directory: "osprey/history" keeps
//	               key k at osprey/history/k (default none: keys at the bucket's root)
//	region         the bucket's region (default $AWS_REGION, then $AWS_DEFAULT_REGION, then
//	               asked to the server)
//	access_key, secret_key, session_token
//	               static credentials; without access_key, the first of $AWS_ACCESS_KEY_ID and
//	               $AWS_SECRET_ACCESS_KEY (and $AWS_SESSION_TOKEN), $MINIO_ROOT_USER and
//	               $MINIO_ROOT_PASSWORD, the shared credentials file (~/.aws/credentials,
//	               $AWS_PROFILE) and the instance's or container's IAM role
//	secure         TLS to a host:port endpoint (default false); a URL's scheme decides
//	               instead (https:// implies TLS; secure=true with http:// is refused)
//	path_style     true: path-style requests (endpoint/bucket/key), as MinIO wants; false:
//	               virtual-host style (bucket.endpoint/key); unset: minio-go picks per endpoint
//	create_bucket  create the bucket when it is missing (default false: that is an error)
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterHistoryStore("s3", func(ctx context.Context, cfg plugins.Config) (historian.Storage, error) {
		o, err := optionsFromConfig(cfg)
		if err != nil {
			return nil, err
		}
		return New(ctx, o)
	})
}

// configKeys are the keys of the store's plugins.Config.
var configKeys = []string{"endpoint", "bucket", "prefix", "region", "access_key", "secret_key", "session_token",
	"secure", "path_style", "create_bucket"}

func optionsFromConfig(cfg plugins.Config) (Options, error) {
	if err := cfg.Check(configKeys...); err != nil {
		return Options{}, err
	}
	o := Options{
		Endpoint:     cfg.String("endpoint", ""),
		Bucket:       cfg.String("bucket", ""),
		Prefix:       cfg.String("prefix", ""),
		Region:       cfg.String("region", ""),
		AccessKey:    cfg.String("access_key", ""),
		SecretKey:    cfg.String("secret_key", ""),
		SessionToken: cfg.String("session_token", ""),
	}
	if o.Bucket == "" {
		return Options{}, fmt.Errorf("%w: key %q is required", plugins.ErrInvalidConfig, "bucket")
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return Options{}, fmt.Errorf("%w: keys %q and %q go together", plugins.ErrInvalidConfig, "access_key", "secret_key")
	}
	if o.SessionToken != "" && o.AccessKey == "" {
		return Options{}, fmt.Errorf("%w: key %q needs %q and %q", plugins.ErrInvalidConfig, "session_token", "access_key", "secret_key")
	}
	var err error
	if o.Secure, err = cfg.Bool("secure", false); err != nil {
		return Options{}, err
	}
	if cfg.Has("secure") && !o.Secure && (o.Endpoint == "" || strings.HasPrefix(strings.ToLower(o.Endpoint), "https://")) {
		return Options{}, fmt.Errorf("%w: key %q is false but the endpoint %s is https", plugins.ErrInvalidConfig, "secure", endpointOrDefault(o.Endpoint))
	}
	if cfg.Has("path_style") {
		path, err := cfg.Bool("path_style", false)
		if err != nil {
			return Options{}, err
		}
		o.Lookup = minio.BucketLookupDNS
		if path {
			o.Lookup = minio.BucketLookupPath
		}
	}
	if o.CreateBucket, err = cfg.Bool("create_bucket", false); err != nil {
		return Options{}, err
	}
	return o, nil
}

// DefaultEndpoint is Amazon S3's endpoint, the one of an Options without Endpoint.
const DefaultEndpoint = "https://s3.amazonaws.com"

func endpointOrDefault(e string) string {
	if e == "" {
		return DefaultEndpoint
	}
	return e
}

// Options configure a Storage.
type Options struct {
	// Endpoint is the S3 server: host[:port], or a URL http://host[:port] or
	// https://host[:port]. Empty is DefaultEndpoint.
	Endpoint string
	// Secure asks for TLS to a host:port Endpoint; with a URL the scheme decides (Secure
	// with an http:// URL is an error).
	Secure bool
	// Bucket is the bucket (required).
	Bucket string
	// Prefix is prepended to every key, as a directory: "a/b" (or "a/b/") keeps key k at
	// a/b/k. Empty keeps the keys at the bucket's root.
	Prefix string
	// Region is the bucket's region. Empty is $AWS_REGION, then $AWS_DEFAULT_REGION, then
	// what the server says the bucket's location is.
	Region string
	// AccessKey, SecretKey and SessionToken are static credentials. Without AccessKey the
	// credentials come from the environment, in order: $AWS_ACCESS_KEY_ID and
	// $AWS_SECRET_ACCESS_KEY (with $AWS_SESSION_TOKEN), $MINIO_ROOT_USER and
	// $MINIO_ROOT_PASSWORD, the shared AWS credentials file, the IAM role of the instance or
	// container; with none of them, requests are anonymous.
	AccessKey, SecretKey, SessionToken string
	// Lookup is how requests name the bucket: minio.BucketLookupPath (endpoint/bucket/key),
	// minio.BucketLookupDNS (bucket.endpoint/key), or minio.BucketLookupAuto (the zero
	// value: minio-go picks per endpoint).
	Lookup minio.BucketLookupType
	// CreateBucket creates the bucket, in Region, when it does not exist; without it a
	// missing bucket is an error of New.
	CreateBucket bool
	// Transport carries the requests; nil is minio-go's default transport.
	Transport http.RoundTripper
}

// Storage is a historian.Storage in an S3 bucket. Every call is bounded by its context; the
// reads of an Object by the context of the Open that returned it. It is safe for concurrent
// use, also by several processes sharing the bucket.
type Storage struct {
	client   *minio.Client
	bucket   string
	prefix   string          // "" or ending in "/"
	endpoint string          // for messages
	idle     *http.Transport // the transport New made, closed by Close; nil for Options.Transport
}

var _ historian.Storage = (*Storage)(nil)

// New returns a Storage of o.Bucket after checking, within ctx, that the bucket exists and
// the credentials may read it (or creating it, with o.CreateBucket).
func New(ctx context.Context, o Options) (*Storage, error) {
	if o.Bucket == "" {
		return nil, errors.New("history store s3: no bucket")
	}
	if err := s3utils.CheckValidBucketName(o.Bucket); err != nil {
		return nil, fmt.Errorf("history store s3: bucket %q: %w", o.Bucket, err)
	}
	host, secure, err := parseEndpoint(o.Endpoint, o.Secure)
	if err != nil {
		return nil, fmt.Errorf("history store s3: %w", err)
	}
	prefix := strings.Trim(o.Prefix, "/")
	if prefix != "" {
		if reason := badKey(prefix); reason != "" {
			return nil, fmt.Errorf("history store s3: prefix %q %s", o.Prefix, reason)
		}
		prefix += "/"
	}
	region := o.Region
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	var creds *credentials.Credentials
	switch {
	case o.AccessKey != "" && o.SecretKey != "":
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
	case o.AccessKey != "" || o.SecretKey != "" || o.SessionToken != "":
		return nil, errors.New("history store s3: static credentials need both an access key and a secret key")
	default:
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.EnvMinio{},
			&credentials.FileAWSCredentials{},
			// The metadata endpoint is not there outside a cloud: give up on it quickly.
			&credentials.IAM{Client: &http.Client{Timeout: 5 * time.Second}},
		})
	}
	s := &Storage{bucket: o.Bucket, prefix: prefix, endpoint: host}
	transport := o.Transport
	if transport == nil {
		if s.idle, err = minio.DefaultTransport(secure); err != nil {
			return nil, fmt.Errorf("history store s3: %w", err)
		}
		transport = s.idle
	}
	s.client, err = minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: region,
		BucketLookup: o.Lookup, Transport: transport})
	if err != nil {
		return nil, fmt.Errorf("history store s3: endpoint %s: %w", host, err)
	}
	if err := s.checkBucket(ctx, o.CreateBucket, region); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// parseEndpoint returns the host:port of an endpoint and whether to use TLS.
func parseEndpoint(endpoint string, secure bool) (host string, tls bool, err error) {
	endpoint = endpointOrDefault(endpoint)
	scheme, _, isURL := strings.Cut(endpoint, "://")
	if !isURL {
		if strings.ContainsAny(endpoint, "/?#@") {
			return "", false, fmt.Errorf("endpoint %q is neither host[:port] nor http(s)://host[:port]", endpoint)
		}
		return endpoint, secure, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	switch {
	case u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return "", false, fmt.Errorf("endpoint %q is not http(s)://host[:port]", endpoint)
	case strings.EqualFold(scheme, "https"):
		return u.Host, true, nil
	case strings.EqualFold(scheme, "http"):
		if secure {
			return "", false, fmt.Errorf("endpoint %q is plain http but TLS (secure) is asked for", endpoint)
		}
		return u.Host, false, nil
	}
	return "", false, fmt.Errorf("endpoint %q: scheme %q is neither http nor https", endpoint, scheme)
}

// checkBucket checks that the bucket exists, creating it if asked to.
func (s *Storage) checkBucket(ctx context.Context, create bool, region string) error {
	exists, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("history store s3: bucket %q at %s: %w", s.bucket, s.endpoint, describe(err))
	}
	if exists {
		return nil
	}
	if !create {
		return fmt.Errorf("history store s3: bucket %q does not exist at %s (create it, or set create_bucket)", s.bucket, s.endpoint)
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err != nil && minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou" {
		return fmt.Errorf("history store s3: create bucket %q at %s: %w", s.bucket, s.endpoint, describe(err))
	}
	return nil
}

// describe adds what to check to the errors of refused credentials.
func describe(err error) error {
	switch minio.ToErrorResponse(err).Code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidSecurity":
		return fmt.Errorf("access denied: %w (check the credentials: access_key and secret_key, or $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, $MINIO_ROOT_USER and $MINIO_ROOT_PASSWORD, ~/.aws/credentials, the IAM role; and the bucket's policy)", err)
	}
	return err
}

// badKey says what is wrong with a key, or "": historian.KeyProblem, the keys every store
// accepts, so that the historian's objects can move between them.
func badKey(key string) string { return historian.KeyProblem(key) }

func checkKey(key string) error {
	if reason := badKey(key); reason != "" {
		return fmt.Errorf("history store s3: key %q %s", key, reason)
	}
	return nil
}

// url names the object of key, for messages.
func (s *Storage) url(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

// Bucket returns the bucket's name.
func (s *Storage) Bucket() string { return s.bucket }

// Prefix returns the key prefix inside the bucket: "" or ending in "/".
func (s *Storage) Prefix() string { return s.prefix }

// Put implements historian.Storage with one PutObject (so objects are at most 5 GiB, S3's
// limit of a single PUT), its MD5 checked by the server.
func (s *Storage) Put(ctx context.Context, key string, body []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{DisableMultipart: true, SendContentMd5: true})
	if err != nil {
		return fmt.Errorf("history store s3: put %s: %w", s.url(key), describe(err))
	}
	return nil
}

// List implements historian.Storage. The keys are relative to the store's prefix; "directory
// marker" objects (keys ending in "/", which other tools create) are skipped.
func (s *Storage) List(ctx context.Context, prefix string) ([]historian.ObjectInfo, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when we return early
	var out []historian.ObjectInfo
	for obj := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("history store s3: list %s: %w", s.url(prefix), describe(obj.Err))
		}
		key, ok := strings.CutPrefix(obj.Key, s.prefix)
		if !ok || key == "" || strings.HasSuffix(key, "/") {
			continue
		}
		out = append(out, historian.ObjectInfo{Key: key, Size: obj.Size, Modified: obj.LastModified})
	}
	// The listing stops without an error when ctx ends between two pages.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("history store s3: list %s: %w", s.url(prefix), err)
	}
	// S3 lists in UTF-8 binary order already; S3-compatible stores may not.
	slices.SortFunc(out, func(a, b historian.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// Open implements historian.Storage: a GetObject whose size is read at once (a HEAD
// request) and whose ReadAt calls are ranged GETs, bounded by ctx (they fail once it ends).
// An Object reads the version it opened: once the object is replaced, its reads fail with
// ErrReplaced rather than mix two versions.
func (s *Storage) Open(ctx context.Context, key string) (historian.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("history store s3: open %s: %w", s.url(key), describe(err))
	}
	info, err := obj.Stat()
	if err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("history store s3: open %s: %w", s.url(key), historian.ErrNotFound)
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, fmt.Errorf("history store s3: open %s: %w", s.url(key), describe(err))
	}
	return &object{obj: obj, size: info.Size, name: s.url(key)}, nil
}

// ErrReplaced is wrapped by the error of a read of an Object whose object was replaced
// since it was opened: open it again to read the new version.
var ErrReplaced = errors.New("the object was replaced since it was opened")

// object is an opened S3 object.
type object struct {
	obj  *minio.Object
	size int64
	name string
}

// ReadAt implements io.ReaderAt; io.EOF comes only with a short read (a read that fills p
// up to the object's end returns nil, as readers that treat any error as fatal expect),
// other errors name the object.
func (o *object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("history store s3: read %s: negative offset %d", o.name, off)
	}
	n, err := o.obj.ReadAt(p, off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err != nil && err != io.EOF {
		if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return n, fmt.Errorf("history store s3: read %s at %d: %w (%v)", o.name, off, ErrReplaced, err)
		}
		return n, fmt.Errorf("history store s3: read %s at %d: %w", o.name, off, err)
	}
	return n, err
}

// Size implements historian.Object.
func (o *object) Size() int64 { return o.size }

// Close implements io.Closer.
func (o *object) Close() error { return o.obj.Close() }

// Close releases the idle connections of the transport New made. It does not wait for the
// calls in flight.
func (s *Storage) Close() error {
	if s.idle != nil {
		s.idle.CloseIdleConnections()
	}
	return nil
}
