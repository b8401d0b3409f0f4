/**
 * A tenant's caps at one provider account: its own caps always; where it has none, its share
 * (TENANT_MAX_SHARE) of each account cap; a TENANT_QUOTAS 0 is the whole account; a cap too small to
 * split leaves the account's own refusal.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { tenantCapsAt } from '../../src/domain/limits.js'

const kimi = { maxFiles: 1000, maxTotalBytes: 10_000_000_000 }

describe('tenant caps at an account', () => {
  it('the share of each cap where the tenant has none of its own', () => {
    const { tenantQuotas } = loadConfig({})
    assert.deepEqual(tenantCapsAt(tenantQuotas, 'acme', kimi, 100), {
      maxFiles: null,
      maxBytes: null,
      shareMaxFiles: 500,
      shareMaxBytes: 5_000_000_000,
      shareMaxPurposeFiles: 50,
    })
    assert.deepEqual(tenantCapsAt(tenantQuotas, 'acme', { maxFiles: null, maxTotalBytes: null }), {
      maxFiles: null,
      maxBytes: null,
      shareMaxFiles: null,
      shareMaxBytes: null,
      shareMaxPurposeFiles: null,
    })
    const small = tenantCapsAt(tenantQuotas, 'acme', { maxFiles: 1, maxTotalBytes: 3 })
    assert.equal(small.shareMaxFiles, null, 'one file cannot be shared: the account refuses')
    assert.equal(small.shareMaxBytes, 1)
  })

  it('own caps replace the share; a 0 in TENANT_QUOTAS is the whole account; TENANT_MAX_SHARE=1 shares nothing', () => {
    const { tenantQuotas } = loadConfig({
      TENANT_MAX_FILES: '800',
      TENANT_QUOTAS: '{"vip": {"max_files": 0, "max_bytes": 0}, "capped": {"max_bytes": 100}}',
    })
    const other = tenantCapsAt(tenantQuotas, 'other', kimi, 100)
    assert.equal(other.maxFiles, 800)
    assert.equal(other.shareMaxFiles, null)
    assert.equal(other.shareMaxPurposeFiles, null, 'a file cap of its own covers the purpose too')
    assert.equal(other.shareMaxBytes, 5_000_000_000)
    assert.deepEqual(tenantCapsAt(tenantQuotas, 'vip', kimi, 100), {
      maxFiles: null,
      maxBytes: null,
      shareMaxFiles: null,
      shareMaxBytes: null,
      shareMaxPurposeFiles: null,
    })
    assert.equal(tenantCapsAt(tenantQuotas, 'capped', kimi).maxBytes, 100)
    const all = tenantCapsAt(loadConfig({ TENANT_MAX_SHARE: '1' }).tenantQuotas, 'acme', kimi, 100)
    assert.deepEqual([all.shareMaxFiles, all.shareMaxBytes, all.shareMaxPurposeFiles], [null, null, null])
  })
})
