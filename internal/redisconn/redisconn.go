// Package redisconn turns the Redis flags shared by receiver and worker (and the values the
// controller reads from Secrets) into an asynq connection option.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/resend-webhook-operator/resend-webhook-operator/internal/cli"
)

// Config says how to reach Redis.
type Config struct {
	// URL is redis://[:password@]host:port/db, rediss://… (TLS) or
	// redis-sentinel://[:password@]host1:port,host2:port/db?master=NAME.
	URL string
	// Password overrides a password in URL when not empty.
	Password string
	// SentinelMaster and SentinelAddrs select Sentinel mode with URL's scheme, db and password.
	SentinelMaster string
	SentinelAddrs  []string
	// ClusterAddrs (host:port of some nodes; the client finds the rest) select Redis Cluster
	// mode with URL's scheme and password; URL may then be empty, and its db must be 0 (a
	// cluster has no other). Not together with Sentinel.
	ClusterAddrs []string
	// CAPEM is a PEM bundle of CAs for TLS; empty means system CAs.
	CAPEM []byte
	// InsecureSkipVerify disables TLS certificate checks.
	InsecureSkipVerify bool
	// PoolSize of the connection pool; 0 means go-redis' default. It does not apply to a
	// cluster: asynq's cluster option has no pool size, so go-redis' default per node is used
	// (10 connections per CPU to each node).
	PoolSize int
	// ReadTimeout bounds the wait for a reply; 0 means go-redis' default (3s). Raise it above
	// the timeout of a blocking command sent in a pipeline (go-redis extends it only for
	// blocking commands sent alone).
	ReadTimeout time.Duration
}

// ConnOpt validates c and returns the asynq connection option. Errors about the URL never
// quote any part of it: a password with a reserved character can end up in any part.
func (c Config) ConnOpt() (asynq.RedisConnOpt, error) {
	raw := c.URL
	if raw == "" && len(c.ClusterAddrs) > 0 {
		raw = "redis://" // a cluster's URL only says TLS or not, and the password
	}
	if raw == "" {
		return nil, errors.New("redis url is empty")
	}
	u, err := url.Parse(raw)
	// A fragment ('#') is never part of a Redis URL: most likely a password was cut there.
	if err != nil || strings.Contains(raw, "#") {
		return nil, errURLSyntax
	}
	password, _ := u.User.Password()
	if c.Password != "" {
		password = c.Password
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil || db < 0 {
			return nil, errors.New("redis url: the path must be a database number such as /0; " + fixURLHint)
		}
	}
	var tlsConf *tls.Config
	switch u.Scheme {
	case "redis", "redis-sentinel":
	case "rediss", "rediss-sentinel":
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in for testing only
		if len(c.CAPEM) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(c.CAPEM) {
				return nil, errors.New("redis tls: CA bundle holds no PEM certificate")
			}
			tlsConf.RootCAs = pool
		}
	default:
		return nil, errors.New("redis url: the scheme must be redis://, rediss://, redis-sentinel:// or rediss-sentinel://")
	}
	if q := u.Query(); len(q) > 1 || (len(q) == 1 && (!strings.HasSuffix(u.Scheme, "-sentinel") || !q.Has("master"))) {
		return nil, errors.New("redis url: the only query parameter is ?master=NAME of a redis-sentinel:// url; " + fixURLHint)
	}
	if len(c.ClusterAddrs) > 0 {
		return c.clusterOpt(u, password, db, tlsConf)
	}
	master, addrs := c.SentinelMaster, c.SentinelAddrs
	if strings.HasSuffix(u.Scheme, "-sentinel") {
		if master == "" {
			master = u.Query().Get("master")
		}
		if len(addrs) == 0 {
			addrs = strings.Split(u.Host, ",")
			if slices.Contains(addrs, "") {
				return nil, errors.New("redis sentinel url: the host part must be host:port[,host:port...]; " + fixURLHint)
			}
		}
		if master == "" {
			return nil, errors.New("redis sentinel url needs ?master=NAME")
		}
	}
	// What a direct and a Sentinel connection share; the Sentinel form takes it over below.
	opt := asynq.RedisClientOpt{Password: password, DB: db, TLSConfig: tlsConf,
		PoolSize: c.PoolSize, ReadTimeout: c.ReadTimeout, DialTimeout: 5 * time.Second}
	if master != "" {
		return asynq.RedisFailoverClientOpt{MasterName: master, SentinelAddrs: addrs,
			Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig,
			PoolSize: opt.PoolSize, ReadTimeout: opt.ReadTimeout, DialTimeout: opt.DialTimeout}, nil
	}
	if u.Hostname() == "" {
		return nil, errors.New("redis url has no host; " + fixURLHint)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":6379"
	}
	if tlsConf != nil {
		tlsConf.ServerName = u.Hostname()
	}
	opt.Addr, opt.Username = host, u.User.Username()
	return opt, nil
}

// clusterOpt is the option of a Redis Cluster: the URL gives only the scheme, the password
// (and a username); its host is not used.
func (c Config) clusterOpt(u *url.URL, password string, db int, tlsConf *tls.Config) (asynq.RedisConnOpt, error) {
	if c.SentinelMaster != "" || len(c.SentinelAddrs) > 0 || strings.HasSuffix(u.Scheme, "-sentinel") {
		return nil, errors.New("redis: use either Redis Cluster or Sentinel, not both")
	}
	if db != 0 {
		return nil, errors.New("redis url: a Redis Cluster has only database 0, so the path must be /0 or empty")
	}
	for i, a := range c.ClusterAddrs {
		// Not quoted: a URL put here by mistake would show its password.
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || strings.ContainsAny(host, "@/?#%") || !validPort(port) {
			return nil, fmt.Errorf("redis cluster address %d of %d is not host:port", i+1, len(c.ClusterAddrs))
		}
	}
	// tlsConf keeps ServerName empty: each node's certificate is checked against the host it
	// is dialled at, which the cluster announces.
	return asynq.RedisClusterClientOpt{Addrs: slices.Clone(c.ClusterAddrs), Username: u.User.Username(), Password: password,
		TLSConfig: tlsConf, ReadTimeout: c.ReadTimeout, DialTimeout: 5 * time.Second}, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// fixURLHint ends every URL error: the likely cause is a password with a reserved character.
const fixURLHint = "a password containing / ? # @ : or % must be percent-encoded, or put in --redis-password-file (a Secret for the operator)"

// errURLSyntax is the one answer to a URL that does not parse: url.Parse's own errors quote
// the URL or a piece of it, which may be the password.
var errURLSyntax = errors.New("redis url is not of the form redis://[:password@]host:port/db; " + fixURLHint)

// Ping checks that Redis answers with the given option's credentials.
func Ping(ctx context.Context, opt asynq.RedisConnOpt) error {
	c, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("unexpected redis client type")
	}
	defer func() { _ = c.Close() }()
	return c.Ping(ctx).Err()
}

// Flags are the Redis command-line flags of receiver and worker.
type Flags struct {
	URL                string
	PasswordFile       string
	SentinelMaster     string
	SentinelAddrs      cli.StringList
	ClusterAddrs       cli.StringList
	CAFile             string
	InsecureSkipVerify bool
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.URL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL: redis://[:password@]host:port/db, rediss://… for TLS, redis-sentinel://host1:port,host2:port/db?master=NAME")
	fs.StringVar(&f.PasswordFile, "redis-password-file", "", "file holding the Redis password (overrides a password in --redis-url)")
	fs.StringVar(&f.SentinelMaster, "redis-sentinel-master", "", "use Redis Sentinel: name of the master set (sentinels from --redis-sentinel-addrs)")
	fs.Var(&f.SentinelAddrs, "redis-sentinel-addrs", "comma-separated host:port of Redis sentinels")
	fs.Var(&f.ClusterAddrs, "redis-cluster-addrs", "use Redis Cluster: comma-separated host:port of some of its nodes; --redis-url then gives only the scheme (rediss:// for TLS) and password, with db 0")
	fs.StringVar(&f.CAFile, "redis-ca-file", "", "PEM file of CAs to trust for rediss:// (default: system CAs)")
	fs.BoolVar(&f.InsecureSkipVerify, "redis-insecure-skip-verify", false, "do not verify the Redis TLS certificate (testing only)")
}

// Config reads the files the flags name and returns the Config.
func (f *Flags) Config() (Config, error) {
	c := Config{URL: f.URL, SentinelMaster: f.SentinelMaster, SentinelAddrs: f.SentinelAddrs, ClusterAddrs: f.ClusterAddrs,
		InsecureSkipVerify: f.InsecureSkipVerify}
	if f.PasswordFile != "" {
		b, err := os.ReadFile(f.PasswordFile)
		if err != nil {
			return c, fmt.Errorf("--redis-password-file: %w", err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
	}
	if f.CAFile != "" {
		b, err := os.ReadFile(f.CAFile)
		if err != nil {
			return c, fmt.Errorf("--redis-ca-file: %w", err)
		}
		c.CAPEM = b
	}
	if len(c.SentinelAddrs) > 0 && c.SentinelMaster == "" {
		return c, errors.New("--redis-sentinel-addrs needs --redis-sentinel-master")
	}
	return c, nil
}
