package vaultkeys

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/hashicorp/vault/api"
)

// Back-off between failed AppRole log-ins in the renewal loop. Calls that
// find the token unusable also log in, so this only bounds background noise.
const (
	minLoginBackoff = time.Second
	maxLoginBackoff = time.Minute
	loginTimeout    = 30 * time.Second
	// refusedRetry is how long a secret_id that Vault refused is not sent
	// again unless it changes. Vault locks an AppRole role out after 5
	// failed log-ins (user lockout, on by default since Vault 1.13), and
	// then refuses even a valid secret_id for 15 minutes; logging in at
	// every denied call would lock jetond out within a second.
	refusedRetry = 5 * time.Minute
)

// login logs in with AppRole and installs the new token on the client. The
// caller must hold loginMu or be New.
func (m *Manager) login(ctx context.Context) (*api.Secret, error) {
	fp := m.secretIDFingerprint()
	if fp == m.refused && time.Since(m.refusedAt) < refusedRetry {
		return nil, errors.New("vaultkeys: AppRole log-in not attempted: Vault refused this secret_id; replace it")
	}
	s, err := m.auth.Login(ctx, m.loginClient)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			// Name the file, never its contents.
			return nil, fmt.Errorf("vaultkeys: AppRole log-in: reading AppRole.SecretIDFile %s: %w", pe.Path, pe.Err)
		}
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 &&
			re.StatusCode != 403 && re.StatusCode != 412 && re.StatusCode != 429 {
			// Wrong role_id or secret_id: retrying will not help.
			m.refused, m.refusedAt = fp, time.Now()
			m.log.Error("vault: AppRole log-in refused; not retrying until the secret_id changes",
				"http_status", re.StatusCode, "retry_after", refusedRetry)
			return nil, fmt.Errorf("vaultkeys: AppRole log-in refused (HTTP %d): check the role_id and secret_id", re.StatusCode)
		}
		return nil, classify(ctx, "AppRole log-in", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, errors.New("vaultkeys: AppRole log-in: malformed response from Vault: no token")
	}
	m.client.SetToken(s.Auth.ClientToken)
	m.secret = s
	m.log.Info("vault: logged in with AppRole",
		"token_ttl", time.Duration(s.Auth.LeaseDuration)*time.Second, "renewable", s.Auth.Renewable)
	return s, nil
}

// secretIDFingerprint hashes the secret_id the next log-in will send, so a
// refused one is not sent again; zero if the file cannot be read.
func (m *Manager) secretIDFingerprint() [sha256.Size]byte {
	if m.secretIDFile == "" {
		return sha256.Sum256([]byte(m.secretID))
	}
	b, err := os.ReadFile(m.secretIDFile)
	if err != nil {
		return [sha256.Size]byte{}
	}
	defer clear(b)
	return sha256.Sum256(b)
}

// relogin logs in again after a call was denied with staleToken. If another
// goroutine already replaced that token, it does nothing, so a burst of
// denied calls causes one log-in.
func (m *Manager) relogin(ctx context.Context, staleToken string) error {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	if m.client.Token() != staleToken {
		return nil
	}
	m.log.Warn("vault: token denied, logging in again")
	if _, err := m.login(ctx); err != nil {
		return err
	}
	select {
	case m.loggedIn <- struct{}{}:
	default:
	}
	return nil
}

func (m *Manager) currentSecret() *api.Secret {
	m.loginMu.Lock()
	defer m.loginMu.Unlock()
	return m.secret
}

// initialSecret returns the auth secret the renewal loop should watch: the
// AppRole log-in, or the static token when it is renewable, else nil.
func (m *Manager) initialSecret(ctx context.Context) (*api.Secret, error) {
	if m.auth != nil {
		return m.currentSecret(), nil
	}
	s, err := m.call(ctx, "look up token", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Auth().Token().LookupSelfWithContext(ctx)
	})
	if err != nil {
		return nil, err
	}
	renewable, err := s.TokenIsRenewable()
	if err != nil {
		return nil, fmt.Errorf("vaultkeys: look up token: malformed response from Vault: %w", err)
	}
	ttl, err := s.TokenTTL()
	if err != nil {
		return nil, fmt.Errorf("vaultkeys: look up token: malformed response from Vault: %w", err)
	}
	if !renewable || ttl <= 0 {
		// A root or other non-expiring token needs no renewal; a
		// non-renewable one cannot get any.
		if ttl > 0 {
			m.log.Warn("vault: token is not renewable and will expire; use AppRole in production", "token_ttl", ttl)
		}
		return nil, nil
	}
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   m.client.Token(),
		Renewable:     true,
		LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// renewLoop keeps the token alive with a LifetimeWatcher. With AppRole it
// logs in again whenever the watcher ends (max TTL reached, renewal
// refused); with a static token it stops once the token can no longer be
// renewed.
func (m *Manager) renewLoop(secret *api.Secret) {
	defer close(m.done)
	for {
		if secret == nil {
			if m.auth == nil {
				return
			}
			var ok bool
			if secret, ok = m.loginWithBackoff(); !ok {
				return
			}
		}
		w, err := m.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			m.log.Error("vault: cannot watch the token", "err", err)
			return
		}
		go w.Start()
		select {
		case <-m.ctx.Done():
			w.Stop()
			return
		case <-m.loggedIn:
			// A call logged in again; watch that token instead.
			w.Stop()
			secret = m.currentSecret()
			continue
		case err := <-w.DoneCh():
			if err != nil {
				m.log.Warn("vault: token renewal ended", "err", err)
			} else {
				m.log.Info("vault: token reached its maximum lifetime")
			}
		}
		if m.auth == nil {
			m.log.Error("vault: the token can no longer be renewed and will expire; jetond needs a new token")
			return
		}
		secret = nil
	}
}

// loginWithBackoff logs in until it succeeds, a call logs in for it, or
// Close is called (ok false).
func (m *Manager) loginWithBackoff() (s *api.Secret, ok bool) {
	backoff := minLoginBackoff
	for {
		ctx, cancel := context.WithTimeout(m.ctx, loginTimeout)
		m.loginMu.Lock()
		s, err := m.login(ctx)
		m.loginMu.Unlock()
		cancel()
		if err == nil {
			return s, true
		}
		if m.ctx.Err() != nil {
			return nil, false
		}
		m.log.Warn("vault: AppRole log-in failed, will retry", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return nil, false
		case <-m.loggedIn:
			t.Stop()
			return m.currentSecret(), true
		case <-t.C:
		}
		backoff = min(2*backoff, maxLoginBackoff)
	}
}
