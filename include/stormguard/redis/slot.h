/* Redis Cluster's key slots: CRC16 (XMODEM) of the key, or of its hash tag
 * (the text between the first '{' and the next '}' when that is not
 * empty), modulo 16384, as Redis's cluster.c keyHashSlot computes it. Pure. */
#ifndef STORMGUARD_SLOT_H
#define STORMGUARD_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define SG_CLUSTER_SLOTS 16384

/* The slot of key (binary, len bytes). */
int sg_cluster_slot(const char *key, size_t len);

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial 0, as Redis's crc16.c. */
uint16_t sg_crc16(const char *buf, size_t len);

#endif
