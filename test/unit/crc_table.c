/*
 * crc_table.c
 *		The unit tests link token.c outside the server, where PostgreSQL's
 *		pg_crc32_table (part of the backend) does not exist.  This file
 *		provides it, computed from the CRC-32 polynomial at start-up; the
 *		tests then check the well-known CRC-32 of "123456789", so a wrong
 *		table could not pass unnoticed.
 */
#include <stdint.h>

uint32_t	pg_crc32_table[256];

void		unit_crc_table_init(void);

void
unit_crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++)
	{
		uint32_t	c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		pg_crc32_table[i] = c;
	}
}
