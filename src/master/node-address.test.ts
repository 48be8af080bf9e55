import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import { describe, test } from 'node:test';
import { addressMismatch, listInterfaces, resolveNodeAddress } from './node-address.ts';

// Documentation ranges only (RFC 5737 / RFC 3849): nothing here is a real network.
function v4(address: string, internal = false): NetworkInterfaceInfo {
  return { address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/24` };
}
function v6(address: string, internal = false): NetworkInterfaceInfo {
  return { address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal, cidr: `${address}/64`, scopeid: 0 };
}

const LOOPBACK = { lo: [v4('127.0.0.1', true), v6('::1', true)] };
const NO_PUBLIC = { usePublicAddress: false, publicIp: null, publicPort: null };

describe('resolveNodeAddress', () => {
  test('publicIp:publicPort wins when usePublicAddress is on', () => {
    const interfaces = { ...LOOPBACK, eth0: [v4('198.51.100.7')] };
    assert.deepEqual(resolveNodeAddress({ usePublicAddress: true, publicIp: '203.0.113.5', publicPort: 9000 }, 8001, interfaces), {
      address: '203.0.113.5:9000',
      source: 'public',
    });
    assert.equal(resolveNodeAddress({ usePublicAddress: true, publicIp: '203.0.113.5', publicPort: null }, 8001, interfaces).address, '203.0.113.5:8001', 'no publicPort: the port listened on');
    assert.equal(resolveNodeAddress({ usePublicAddress: true, publicIp: 'edge-1.example.org', publicPort: null }, 8001, interfaces).address, 'edge-1.example.org:8001');
    assert.equal(resolveNodeAddress({ usePublicAddress: true, publicIp: '2001:db8::5', publicPort: 9000 }, 8001, interfaces).address, '[2001:db8::5]:9000');
  });

  test('publicIp is ignored unless usePublicAddress is on, and usePublicAddress needs a publicIp', () => {
    const interfaces = { ...LOOPBACK, eth0: [v4('198.51.100.7')] };
    assert.deepEqual(resolveNodeAddress({ usePublicAddress: false, publicIp: '203.0.113.5', publicPort: 9000 }, 8001, interfaces), {
      address: '198.51.100.7:8001',
      source: 'interface',
    });
    assert.equal(resolveNodeAddress({ usePublicAddress: true, publicIp: null, publicPort: 9000 }, 8001, interfaces).address, '198.51.100.7:8001');
  });

  test('the first non-internal IPv4, with the port listened on: loopback, IPv6 and link-local skipped', () => {
    const interfaces = {
      ...LOOPBACK,
      eth0: [v6('2001:db8::7'), v4('169.254.10.20')],
      eth1: [v4('198.51.100.7'), v4('203.0.113.9')],
    };
    assert.deepEqual(resolveNodeAddress(NO_PUBLIC, 41234, interfaces), { address: '198.51.100.7:41234', source: 'interface' });
  });

  test('127.0.1.1 (what a hostname lookup gives on Debian) never becomes the address', () => {
    // Some setups show loopback aliases on an interface not flagged internal.
    const interfaces = { lo: [v4('127.0.0.1', true), v4('127.0.1.1', true)], dummy0: [v4('127.0.1.1')], eth0: [v4('198.51.100.7')] };
    assert.equal(resolveNodeAddress(NO_PUBLIC, 8001, interfaces).address, '198.51.100.7:8001');
    const onlyLoopback = { lo: [v4('127.0.0.1', true)], dummy0: [v4('127.0.1.1')] };
    const resolved = resolveNodeAddress(NO_PUBLIC, 8001, onlyLoopback);
    assert.doesNotMatch(resolved.address, /^127\.0\.1\.1/);
    assert.equal(resolved.source, 'loopback', 'the log says tablets cannot reach it');
  });

  test('no network at all: loopback, said so', () => {
    assert.deepEqual(resolveNodeAddress(NO_PUBLIC, 8001, LOOPBACK), { address: '127.0.0.1:8001', source: 'loopback' });
    assert.deepEqual(resolveNodeAddress(NO_PUBLIC, 8001, {}), { address: '127.0.0.1:8001', source: 'loopback' });
  });

  test('interfaces that cannot be listed (a sandbox without AF_NETLINK): loopback, marked unlisted with the reason, never a throw', () => {
    const refused = () => listInterfaces(() => {
      throw new Error('uv_interface_addresses returned Unknown system error 97');
    });
    assert.deepEqual(resolveNodeAddress(NO_PUBLIC, 8001, refused), {
      address: '127.0.0.1:8001',
      source: 'unlisted',
      error: 'uv_interface_addresses returned Unknown system error 97',
    });
    let listed = 0;
    const counting = () => {
      listed++;
      return refused();
    };
    assert.equal(resolveNodeAddress({ usePublicAddress: true, publicIp: '203.0.113.5', publicPort: null }, 8001, counting).address, '203.0.113.5:8001', 'publicIp needs no interface');
    assert.equal(resolveNodeAddress(NO_PUBLIC, 8001, counting, '198.51.100.7').address, '198.51.100.7:8001', '--host needs no interface');
    assert.equal(listed, 0, 'the interfaces are listed only when the address depends on them');
  });

  test('the machine\'s own interfaces by default', () => {
    const resolved = resolveNodeAddress(NO_PUBLIC, 8001);
    assert.match(resolved.address, /^\d+\.\d+\.\d+\.\d+:8001$/);
    assert.doesNotMatch(resolved.address, /^127\.0\.1\.1:/);
  });
});

describe('the address of a node bound to one address', () => {
  const interfaces = { ...LOOPBACK, eth0: [v4('192.0.2.2')] };

  test('listening on one specific address registers that address, not the first interface', () => {
    assert.deepEqual(resolveNodeAddress(NO_PUBLIC, 8001, interfaces, '127.0.0.1'), { address: '127.0.0.1:8001', source: 'listen' });
    assert.deepEqual(resolveNodeAddress(NO_PUBLIC, 8001, interfaces, '198.51.100.7'), { address: '198.51.100.7:8001', source: 'listen' });
    assert.equal(resolveNodeAddress(NO_PUBLIC, 8001, interfaces, '2001:db8::7').address, '[2001:db8::7]:8001');
    assert.equal(resolveNodeAddress(NO_PUBLIC, 8001, interfaces, '0.0.0.0').address, '192.0.2.2:8001', 'a wildcard listen: the interface');
    assert.equal(resolveNodeAddress(NO_PUBLIC, 8001, interfaces, '::').address, '192.0.2.2:8001');
    assert.equal(resolveNodeAddress({ usePublicAddress: true, publicIp: '203.0.113.5', publicPort: null }, 8001, interfaces, '127.0.0.1').address, '203.0.113.5:8001', 'publicIp still wins');
  });

  test('a registered address the node does not listen on is reported; a wildcard listens on every address', () => {
    assert.equal(addressMismatch('192.0.2.2:8001', '0.0.0.0', 8001), null);
    assert.equal(addressMismatch('[2001:db8::7]:8001', '::', 8001), null);
    assert.equal(addressMismatch('127.0.0.1:8001', '127.0.0.1', 8001), null);
    assert.equal(addressMismatch('[2001:db8::7]:8001', '2001:db8::7', 8001), null);
    assert.match(addressMismatch('192.0.2.2:8001', '127.0.0.1', 8001) ?? '', /192\.0\.2\.2:8001, is not one this node listens on \(127\.0\.0\.1 port 8001\)/);
    assert.match(addressMismatch('203.0.113.5:9000', '0.0.0.0', 8001) ?? '', /not one this node listens on \(every address port 8001\).*NAT or proxy/, 'another port: forwarded at best');
  });
});
